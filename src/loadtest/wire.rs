//! The gateway side of each media-websocket protocol (PROTOCOLS.md §2), as the load tester speaks
//! it: the opening messages (Twilio/Telnyx `connected` + `start`, Plivo `start`, Vonage
//! `websocket:connected`, native `start`), caller audio, DTMF, the answers a gateway gives once
//! audio before a mark has played (Twilio/Telnyx `mark`, Plivo `playedStream`, Vonage
//! `websocket:notify`, native `mark`) or once it dropped its buffer (Plivo `clearedAudio`, Vonage
//! `websocket:cleared`), `stop`; and what the server sends, parsed into [`ServerEvent`]s.
//!
//! Only the documented wire formats: nothing here knows it is talking to Switchboard. Parsing is
//! lenient about members it does not need and strict about the ones it does (an audio message
//! without a decodable payload is a fault).

use std::borrow::Cow;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::transport::{Encoding, Protocol, WireFormat};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the server sent, free of wire details.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// One encoded audio payload.
    Audio(Vec<u8>),
    /// A mark / checkpoint / notify after the audio sent so far; `answer` is what the gateway
    /// sends back once that audio has played (or been cleared).
    Mark { name: String, answer: Message },
    /// Drop buffered audio; `ack` is the gateway's confirmation, on protocols that have one.
    Clear { ack: Option<Message> },
    /// In-band hang-up (native).
    Hangup { reason: String },
    /// In-band transfer (native).
    Transfer { to: String },
    /// Anything else (unknown events are ignored, as gateways do).
    Ignored,
}

/// Identifiers of one simulated call, unique per call so server logs can be told apart.
#[derive(Debug, Clone)]
pub struct CallIds {
    pub stream_id: String,
    pub call_id: String,
    pub account_id: String,
}

impl CallIds {
    /// Ids for call `index` of the run tagged `run` (any short unique text).
    pub fn new(protocol: Protocol, run: &str, index: usize) -> CallIds {
        let tag = format!("{run}{index:06}");
        match protocol {
            Protocol::Twilio => CallIds {
                stream_id: format!("MZ{tag}"),
                call_id: format!("CA{tag}"),
                account_id: "ACloadtest".into(),
            },
            Protocol::Telnyx => CallIds {
                stream_id: format!("loadtest-{tag}"),
                call_id: format!("v3:loadtest-{tag}"),
                account_id: String::new(),
            },
            Protocol::Plivo => CallIds {
                stream_id: format!("stream-{tag}"),
                call_id: format!("call-{tag}"),
                account_id: "MAloadtest".into(),
            },
            Protocol::Vonage | Protocol::Native => CallIds {
                stream_id: String::new(),
                call_id: format!("loadtest-{tag}"),
                account_id: String::new(),
            },
        }
    }
}

/// The gateway end of one media websocket.
#[derive(Debug)]
pub struct ClientWire {
    protocol: Protocol,
    format: WireFormat,
    ids: CallIds,
    /// Twilio/Telnyx/Plivo number every message they send; the next number.
    sequence: u64,
}

/// The subset of every protocol's outbound JSON the load tester reads.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    /// Vonage commands are keyed by `action`.
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(borrow)]
    mark: Option<NameBody<'a>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    /// Vonage `notify` payload, echoed back as it came.
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow)]
    payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct NameBody<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

impl ClientWire {
    pub fn new(protocol: Protocol, format: WireFormat, ids: CallIds) -> ClientWire {
        ClientWire { protocol, format, ids, sequence: 1 }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.sequence;
        self.sequence += 1;
        s
    }

    /// The messages that open the stream. `params` are the custom parameters (`agentId`,
    /// `token`, anything given with `--param`), carried where each protocol carries them.
    pub fn opening(&mut self, params: &[(String, String)]) -> Vec<Message> {
        let object = || -> Map<String, Value> {
            params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
        };
        let ids = self.ids.clone();
        let rate = self.format.sample_rate_hz;
        match self.protocol {
            Protocol::Twilio => {
                let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
                let start = json!({
                    "event": "start", "sequenceNumber": self.next_seq().to_string(), "streamSid": ids.stream_id,
                    "start": {
                        "accountSid": ids.account_id, "streamSid": ids.stream_id, "callSid": ids.call_id,
                        "tracks": ["inbound"], "customParameters": object(),
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                    }
                });
                vec![text(&connected), text(&start)]
            }
            Protocol::Telnyx => {
                let connected = json!({"event": "connected", "version": "1.0.0"});
                let start = json!({
                    "event": "start", "sequence_number": self.next_seq().to_string(), "stream_id": ids.stream_id,
                    "start": {
                        "call_control_id": ids.call_id, "custom_parameters": object(),
                        "media_format": {"encoding": telnyx_encoding(self.format.encoding), "sample_rate": rate, "channels": 1}
                    }
                });
                vec![text(&connected), text(&start)]
            }
            Protocol::Plivo => {
                let headers: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let start = json!({
                    "event": "start", "sequenceNumber": self.next_seq(),
                    "start": {
                        "callId": ids.call_id, "streamId": ids.stream_id, "accountId": ids.account_id,
                        "tracks": ["inbound"],
                        "mediaFormat": {"encoding": plivo_encoding(self.format.encoding), "sampleRate": rate}
                    },
                    "extra_headers": headers.join(";")
                });
                vec![text(&start)]
            }
            Protocol::Vonage => {
                let mut connected = object();
                connected.insert("event".into(), "websocket:connected".into());
                connected.insert("content-type".into(), format!("audio/l16;rate={rate}").into());
                connected.entry("uuid").or_insert_with(|| ids.call_id.clone().into());
                vec![text(&Value::Object(connected))]
            }
            Protocol::Native => {
                let mut start = object();
                start.insert("event".into(), "start".into());
                start.insert("codec".into(), native_codec(self.format.encoding).into());
                start.insert("sampleRate".into(), rate.into());
                vec![text(&Value::Object(start))]
            }
        }
    }

    /// Caller audio frame number `index` (0-based, 20 ms each).
    pub fn media(&mut self, index: u64, payload: &[u8]) -> Message {
        let timestamp_ms = index * 20;
        match self.protocol {
            // The same message; Telnyx spells two keys its own way.
            Protocol::Twilio | Protocol::Telnyx => {
                let (seq_key, stream_key) = match self.protocol {
                    Protocol::Twilio => ("sequenceNumber", "streamSid"),
                    _ => ("sequence_number", "stream_id"),
                };
                let seq = self.next_seq();
                let mut s = String::with_capacity(200 + payload.len() * 4 / 3);
                s.push_str(r#"{"event":"media",""#);
                s.push_str(seq_key);
                s.push_str(r#"":""#);
                s.push_str(&seq.to_string());
                s.push_str(r#"",""#);
                s.push_str(stream_key);
                s.push_str(r#"":"#);
                s.push_str(&json_str(&self.ids.stream_id));
                s.push_str(r#","media":{"track":"inbound","chunk":""#);
                s.push_str(&(index + 1).to_string());
                s.push_str(r#"","timestamp":""#);
                s.push_str(&timestamp_ms.to_string());
                s.push_str(r#"","payload":""#);
                B64.encode_string(payload, &mut s);
                s.push_str("\"}}");
                Message::text(s)
            }
            Protocol::Plivo => {
                let seq = self.next_seq();
                let mut s = String::with_capacity(200 + payload.len() * 4 / 3);
                s.push_str(r#"{"event":"media","sequenceNumber":"#);
                s.push_str(&seq.to_string());
                s.push_str(r#","streamId":"#);
                s.push_str(&json_str(&self.ids.stream_id));
                s.push_str(r#","media":{"track":"inbound","timestamp":""#);
                s.push_str(&timestamp_ms.to_string());
                s.push_str(r#"","chunk":"#);
                s.push_str(&(index + 1).to_string());
                s.push_str(r#","payload":""#);
                B64.encode_string(payload, &mut s);
                s.push_str("\"}}");
                Message::text(s)
            }
            Protocol::Vonage | Protocol::Native => Message::binary(payload.to_vec()),
        }
    }

    /// A DTMF key press.
    pub fn dtmf(&mut self, digit: char, duration_ms: u32) -> Message {
        let d = digit.to_string();
        let v = match self.protocol {
            Protocol::Twilio => json!({"event": "dtmf", "sequenceNumber": self.next_seq().to_string(),
                "streamSid": self.ids.stream_id, "dtmf": {"track": "inbound_track", "digit": d}}),
            Protocol::Telnyx => json!({"event": "dtmf", "sequence_number": self.next_seq().to_string(),
                "stream_id": self.ids.stream_id, "dtmf": {"digit": d}}),
            Protocol::Plivo => json!({"event": "dtmf", "sequenceNumber": self.next_seq(),
                "streamId": self.ids.stream_id, "dtmf": {"track": "inbound", "digit": d}}),
            Protocol::Vonage => json!({"event": "websocket:dtmf", "digit": d, "duration": duration_ms}),
            Protocol::Native => json!({"event": "dtmf", "digit": d}),
        };
        text(&v)
    }

    /// The caller hangs up (sent before closing the socket); Vonage just closes.
    pub fn stop(&mut self) -> Option<Message> {
        let v = match self.protocol {
            Protocol::Twilio => json!({"event": "stop", "sequenceNumber": self.next_seq().to_string(),
                "streamSid": self.ids.stream_id,
                "stop": {"accountSid": self.ids.account_id, "callSid": self.ids.call_id}}),
            Protocol::Telnyx => json!({"event": "stop", "sequence_number": self.next_seq().to_string(),
                "stream_id": self.ids.stream_id, "stop": {"call_control_id": self.ids.call_id}}),
            Protocol::Plivo => json!({"event": "stop", "sequenceNumber": self.next_seq(),
                "streamId": self.ids.stream_id, "stop": {"callId": self.ids.call_id}}),
            Protocol::Vonage => return None,
            Protocol::Native => json!({"event": "stop"}),
        };
        Some(text(&v))
    }

    /// Parses one server message. `Err` describes a message the protocol does not allow
    /// (unparseable JSON, binary on a JSON protocol, audio without a payload).
    pub fn parse(&mut self, msg: &Message) -> Result<ServerEvent, String> {
        let body = match msg {
            Message::Text(t) => t.as_str(),
            Message::Binary(b) => {
                return match self.protocol {
                    Protocol::Vonage | Protocol::Native => Ok(ServerEvent::Audio(b.to_vec())),
                    p => Err(format!("binary frame on the {} protocol (JSON text only)", p.as_str())),
                }
            }
            _ => return Ok(ServerEvent::Ignored),
        };
        let m: Incoming = serde_json::from_str(body).map_err(|e| format!("unparseable message: {e}"))?;
        let event = m.event.as_deref().unwrap_or_default();
        let action = m.action.as_deref().unwrap_or_default();
        let name_of = |m: &Incoming| -> Result<String, String> {
            m.mark
                .as_ref()
                .and_then(|b| b.name.as_deref())
                .or(m.name.as_deref())
                .map(str::to_owned)
                .ok_or_else(|| format!("'{event}' without a name"))
        };
        let audio = |m: &Incoming| -> Result<ServerEvent, String> {
            let payload = m.media.as_ref().and_then(|b| b.payload.as_deref());
            let payload = payload.ok_or_else(|| format!("'{event}' without media.payload"))?;
            B64.decode(payload).map(ServerEvent::Audio).map_err(|_| format!("'{event}': invalid base64"))
        };
        Ok(match (self.protocol, event, action) {
            (Protocol::Twilio | Protocol::Telnyx, "media", _) | (Protocol::Plivo, "playAudio", _) => {
                audio(&m)?
            }
            (Protocol::Twilio | Protocol::Telnyx | Protocol::Native, "mark", _)
            | (Protocol::Plivo, "checkpoint", _) => {
                let name = name_of(&m)?;
                let answer = self.mark_answer(&name);
                ServerEvent::Mark { name, answer }
            }
            (Protocol::Vonage, _, "notify") => {
                let payload = m.payload.clone().unwrap_or(Value::Null);
                let name = payload.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                ServerEvent::Mark {
                    name,
                    answer: text(&json!({"event": "websocket:notify", "payload": payload})),
                }
            }
            (Protocol::Twilio | Protocol::Telnyx | Protocol::Native, "clear", _) => {
                ServerEvent::Clear { ack: None }
            }
            (Protocol::Plivo, "clearAudio", _) => ServerEvent::Clear {
                ack: Some(text(&json!({"event": "clearedAudio", "sequenceNumber": self.next_seq(),
                    "streamId": self.ids.stream_id}))),
            },
            (Protocol::Vonage, _, "clear") => {
                ServerEvent::Clear { ack: Some(text(&json!({"event": "websocket:cleared"}))) }
            }
            (Protocol::Native, "hangup", _) => {
                ServerEvent::Hangup { reason: m.reason.as_deref().unwrap_or_default().to_owned() }
            }
            (Protocol::Native, "transfer", _) => {
                ServerEvent::Transfer { to: m.to.as_deref().unwrap_or_default().to_owned() }
            }
            _ => ServerEvent::Ignored,
        })
    }

    /// What the gateway sends once the audio before mark `name` has played.
    fn mark_answer(&mut self, name: &str) -> Message {
        let v = match self.protocol {
            Protocol::Twilio => json!({"event": "mark", "sequenceNumber": self.next_seq().to_string(),
                "streamSid": self.ids.stream_id, "mark": {"name": name}}),
            Protocol::Telnyx => json!({"event": "mark", "sequence_number": self.next_seq().to_string(),
                "stream_id": self.ids.stream_id, "mark": {"name": name}}),
            Protocol::Plivo => json!({"event": "playedStream", "sequenceNumber": self.next_seq(),
                "streamId": self.ids.stream_id, "name": name}),
            Protocol::Vonage => json!({"event": "websocket:notify", "payload": {"name": name}}),
            Protocol::Native => json!({"event": "mark", "name": name}),
        };
        text(&v)
    }
}

fn text(v: &Value) -> Message {
    Message::text(v.to_string())
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn telnyx_encoding(e: Encoding) -> &'static str {
    match e {
        Encoding::Pcmu => "PCMU",
        Encoding::Pcma => "PCMA",
        Encoding::L16Le | Encoding::L16Be => "L16",
        Encoding::Opus => "OPUS",
    }
}

fn plivo_encoding(e: Encoding) -> &'static str {
    match e {
        Encoding::L16Le | Encoding::L16Be => "audio/x-l16",
        _ => "audio/x-mulaw",
    }
}

fn native_codec(e: Encoding) -> &'static str {
    match e {
        Encoding::Pcmu => "pcmu",
        Encoding::Pcma => "pcma",
        Encoding::L16Le | Encoding::L16Be => "l16",
        Encoding::Opus => "opus",
    }
}

/// The codecs a protocol can negotiate from the gateway side, the first being the default.
pub fn formats(protocol: Protocol) -> &'static [Encoding] {
    match protocol {
        Protocol::Twilio => &[Encoding::Pcmu],
        Protocol::Telnyx => &[Encoding::Pcmu, Encoding::Pcma, Encoding::L16Be, Encoding::Opus],
        Protocol::Vonage => &[Encoding::L16Le],
        Protocol::Plivo => &[Encoding::Pcmu, Encoding::L16Le],
        Protocol::Native => &[Encoding::Pcmu, Encoding::Pcma, Encoding::L16Le, Encoding::Opus],
    }
}

/// The path Switchboard serves a protocol on; used when `--url` names no path.
pub fn default_path(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Twilio => "/twilio/media",
        Protocol::Telnyx => "/telnyx/media",
        Protocol::Vonage => "/vonage/media",
        Protocol::Plivo => "/plivo/media",
        Protocol::Native => "/v1/media",
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
