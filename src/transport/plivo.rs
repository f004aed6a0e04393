//! Plivo audio streams (PROTOCOLS.md §2, `GET /plivo/media`): JSON text frames.
//!
//! In: `start {start: {callId, streamId, accountId, tracks, mediaFormat: {encoding, sampleRate}},
//! extra_headers}`, `media {streamId, media: {track, timestamp, chunk, payload}}`, `dtmf {dtmf:
//! {track, digit}}`, `playedStream {streamId, name}` (a checkpoint was played; `played` in older
//! pages) → [`MediaEvent::Mark`], `clearedAudio` → [`MediaEvent::Cleared`], `stop`.
//! `extra_headers` (the `<Stream extraHeaders>` attribute: `k=v;k=v`, `k=v,k=v`, or a JSON object)
//! becomes the params — that is where `agentId` and `token` travel.
//!
//! Out: `playAudio {media: {contentType, sampleRate, payload}}`, `checkpoint {streamId, name}`,
//! `clearAudio {streamId}`; hang-up and transfer go through the REST API (`None` here).
//!
//! Codecs: `audio/x-mulaw` (8 kHz) and `audio/x-l16` (8 or 16 kHz). Plivo's pages do not state the
//! L16 byte order; Plivo's own reference transport (plivo-labs/agent-transport) reads and writes it
//! little-endian (`i16::from_le_bytes`), so it maps to [`Encoding::L16Le`].

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::wire_util::{self as u, bad_field};
use super::{
    Encoding, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WireFormat, WsMessage,
};

const FIELDS: &[&str] = &[
    "event",
    "streamId",
    "start",
    "callId",
    "accountId",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "extra_headers",
    "media",
    "track",
    "payload",
    "dtmf",
    "digit",
    "name",
];

#[derive(Debug, Default)]
pub struct PlivoWire {
    /// `streamId` and format from the start message.
    started: Option<(String, WireFormat)>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    start: Option<Start>,
    #[serde(borrow)]
    media: Option<Media<'a>>,
    #[serde(borrow)]
    dtmf: Option<Dtmf<'a>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    /// Sent on every frame, not only `start`: borrowed so media frames allocate nothing for it.
    #[serde(borrow)]
    extra_headers: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start {
    call_id: Option<String>,
    stream_id: Option<String>,
    account_id: Option<String>,
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormat {
    encoding: Option<String>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    sample_rate: Option<u64>,
}

#[derive(Deserialize)]
struct Media<'a> {
    #[serde(borrow)]
    track: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Dtmf<'a> {
    #[serde(borrow)]
    digit: Option<Cow<'a, str>>,
}

fn wire_format(mf: &MediaFormat) -> Result<WireFormat, ProtocolError> {
    let enc = mf.encoding.as_deref().ok_or_else(|| bad_field("start", "encoding"))?;
    // Accept the XML attribute's form too: `audio/x-l16;rate=16000`.
    let mime = enc.split(';').next().unwrap_or("").trim();
    let (encoding, default_rate) = if mime.eq_ignore_ascii_case("audio/x-mulaw") {
        (Encoding::Pcmu, 8000)
    } else if mime.eq_ignore_ascii_case("audio/x-l16") {
        (Encoding::L16Le, 8000)
    } else {
        return Err(ProtocolError::UnsupportedFormat(format!(
            "Plivo encoding {enc:?}; only audio/x-mulaw and audio/x-l16"
        )));
    };
    let rate = mf.sample_rate.unwrap_or(default_rate);
    match (encoding, rate) {
        (Encoding::Pcmu, 8000) | (Encoding::L16Le, 8000 | 16000) => {
            Ok(WireFormat { encoding, sample_rate_hz: rate as u32 })
        }
        _ => Err(ProtocolError::UnsupportedFormat(format!("Plivo {enc} at {rate} Hz"))),
    }
}

/// `extra_headers`: `a=1;b=2` (what Plivo sends), `a=1,b=2` (the XML attribute's form) or a JSON
/// object of strings.
fn parse_extra_headers(raw: &str, into: &mut HashMap<String, String>) {
    let raw = raw.trim();
    if raw.starts_with('{') {
        if let Ok(obj) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw) {
            u::string_fields(&obj, &[], into);
        }
        return;
    }
    for pair in raw.split([';', ',']) {
        if let Some((k, v)) = pair.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                into.insert(k.to_owned(), v.trim().to_owned());
            }
        }
    }
}

impl PlivoWire {
    fn start(&mut self, msg: Msg<'_>) -> Result<MediaEvent, ProtocolError> {
        if self.started.is_some() {
            return Err(ProtocolError::DuplicateStart);
        }
        let start = msg.start.ok_or_else(|| bad_field("start", "start"))?;
        let stream_id =
            start.stream_id.filter(|s| !s.is_empty()).ok_or_else(|| bad_field("start", "streamId"))?;
        let mf = start.media_format.as_ref().ok_or_else(|| bad_field("start", "mediaFormat"))?;
        let format = wire_format(mf)?;
        let mut params = HashMap::new();
        if let Some(raw) = &msg.extra_headers {
            parse_extra_headers(raw, &mut params);
        }
        self.started = Some((stream_id.clone(), format));
        Ok(MediaEvent::Start(StartInfo {
            stream_id,
            call_id: start.call_id,
            account_id: start.account_id,
            format,
            params,
        }))
    }
}

impl Wire for PlivoWire {
    fn protocol(&self) -> Protocol {
        Protocol::Plivo
    }

    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        let Some(msg): Option<Msg> = u::parse_message(&msg, "plivo", FIELDS, is_known)? else {
            return Ok(());
        };
        let event = msg.event.as_deref().ok_or_else(|| bad_field("message", "event"))?;
        let started = self.started.is_some();
        match event {
            "start" => out.push(self.start(msg)?),
            "media" | "dtmf" | "playedStream" | "played" | "clearedAudio" if !started => {
                return Err(ProtocolError::MediaBeforeStart)
            }
            "media" => {
                let media = msg.media.ok_or_else(|| bad_field("media", "media"))?;
                let payload = media.payload.ok_or_else(|| bad_field("media", "payload"))?;
                if u::is_inbound(media.track.as_deref()) {
                    out.push(MediaEvent::Audio(u::decode_b64(&payload)?));
                }
            }
            "dtmf" => {
                let dtmf = msg.dtmf.ok_or_else(|| bad_field("dtmf", "dtmf"))?;
                out.push(MediaEvent::Dtmf(u::parse_digit("dtmf", dtmf.digit.as_deref())?));
            }
            "playedStream" | "played" => {
                let name = msg.name.ok_or_else(|| bad_field(event, "name"))?;
                out.push(MediaEvent::Mark(name.into_owned()));
            }
            "clearedAudio" => out.push(MediaEvent::Cleared),
            "stop" if started => out.push(MediaEvent::Stop),
            _ => {} // stop before start, and future events
        }
        Ok(())
    }

    fn encode(&mut self, item: &Outbound) -> Option<WsMessage> {
        let (stream_id, format) = self.started.as_ref()?;
        match item {
            Outbound::Audio(bytes) => {
                let content_type = match format.encoding {
                    Encoding::Pcmu => "audio/x-mulaw",
                    _ => "audio/x-l16",
                };
                let mut s = String::with_capacity(96 + u::b64_len(bytes));
                s.push_str(r#"{"event":"playAudio","media":{"contentType":""#);
                s.push_str(content_type);
                s.push_str(r#"","sampleRate":"#);
                s.push_str(rate_text(format.sample_rate_hz));
                s.push_str(r#","payload":""#);
                u::push_b64(&mut s, bytes);
                s.push_str("\"}}");
                Some(u::text(s))
            }
            Outbound::Mark(name) => {
                Some(u::json_event("checkpoint", &[("streamId", stream_id), ("name", name)]))
            }
            Outbound::Clear => Some(u::json_event("clearAudio", &[("streamId", stream_id)])),
            Outbound::Hangup { .. } | Outbound::Transfer { .. } => None,
        }
    }
}

/// The sample rates Plivo accepts, as text (no formatting machinery on the media path).
fn rate_text(rate: u32) -> &'static str {
    if rate == 16000 {
        "16000"
    } else {
        "8000"
    }
}

fn is_known(event: &str) -> bool {
    matches!(event, "start" | "media" | "dtmf" | "playedStream" | "played" | "clearedAudio" | "stop")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    // Examples from Plivo's "Stream Event Protocol" / audio streaming reference pages.
    const START: &str = r#"{"event":"start","sequenceNumber":1,"start":{"callId":"12345678-1234-1234-1234-123456789abc","streamId":"87654321-4321-4321-4321-cba987654321","accountId":"MAXXXXXXXXXXXXXXXXXX","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"agentId=agt1;token=tok1"}"#;
    const DTMF: &str = r#"{"event":"dtmf","sequenceNumber":5,"streamId":"87654321-4321-4321-4321-cba987654321","dtmf":{"track":"inbound","digit":"5","timestamp":"1705312200000"}}"#;
    const PLAYED: &str = r#"{"event":"playedStream","sequenceNumber":7,"streamId":"87654321-4321-4321-4321-cba987654321","name":"customer greeting audio"}"#;
    const CLEARED: &str =
        r#"{"sequenceNumber":0,"event":"clearedAudio","streamId":"87654321-4321-4321-4321-cba987654321"}"#;
    const SID: &str = "87654321-4321-4321-4321-cba987654321";

    fn media(track: &str, bytes: &[u8]) -> String {
        let mut payload = String::new();
        u::push_b64(&mut payload, bytes);
        format!(
            r#"{{"event":"media","sequenceNumber":42,"streamId":"{SID}","media":{{"track":"{track}","timestamp":"1705312200000","chunk":41,"payload":"{payload}"}},"extra_headers":"agentId=agt1"}}"#
        )
    }

    fn t(s: &str) -> WsMessage {
        WsMessage::Text(s.to_owned().into())
    }

    fn feed(w: &mut PlivoWire, s: &str) -> Result<Vec<MediaEvent>, ProtocolError> {
        let mut out = Vec::new();
        w.decode(t(s), &mut out).map(|_| out)
    }

    fn started(start: &str) -> PlivoWire {
        let mut w = PlivoWire::default();
        feed(&mut w, start).unwrap();
        w
    }

    fn json_of(m: Option<WsMessage>) -> Value {
        match m {
            Some(WsMessage::Text(s)) => serde_json::from_str(s.as_str()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_session_round_trip() {
        let mut w = PlivoWire::default();
        let ev = feed(&mut w, START).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(info.stream_id, SID);
        assert_eq!(info.call_id.as_deref(), Some("12345678-1234-1234-1234-123456789abc"));
        assert_eq!(info.account_id.as_deref(), Some("MAXXXXXXXXXXXXXXXXXX"));
        assert_eq!(info.format, WireFormat::PCMU_8K);
        assert_eq!((info.params["agentId"].as_str(), info.params["token"].as_str()), ("agt1", "tok1"));
        let frame = vec![0x7f; 160];
        assert_eq!(feed(&mut w, &media("inbound", &frame)).unwrap(), vec![MediaEvent::Audio(frame.clone())]);
        assert_eq!(feed(&mut w, &media("outbound", &frame)).unwrap(), vec![]);
        assert_eq!(feed(&mut w, DTMF).unwrap(), vec![MediaEvent::Dtmf('5')]);
        assert_eq!(feed(&mut w, PLAYED).unwrap(), vec![MediaEvent::Mark("customer greeting audio".into())]);
        let legacy = PLAYED.replace("playedStream", "played");
        assert_eq!(feed(&mut w, &legacy).unwrap(), vec![MediaEvent::Mark("customer greeting audio".into())]);
        assert_eq!(feed(&mut w, CLEARED).unwrap(), vec![MediaEvent::Cleared]);
        assert_eq!(feed(&mut w, r#"{"event":"stop"}"#).unwrap(), vec![MediaEvent::Stop]);
        assert_eq!(feed(&mut w, r#"{"event":"playFailed","reason":7}"#).unwrap(), vec![]);
    }

    #[test]
    fn l16_formats_and_extra_header_forms() {
        let l16 = START.replace("audio/x-mulaw", "audio/x-l16").replace("8000", "\"16000\"");
        let ev = feed(&mut PlivoWire::default(), &l16).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!() };
        assert_eq!(info.format, WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 });
        let mut h = HashMap::new();
        parse_extra_headers("test1=12,test2=123", &mut h);
        parse_extra_headers(r#"{"agentId":"a"}"#, &mut h);
        assert_eq!((h["test1"].as_str(), h["test2"].as_str(), h["agentId"].as_str()), ("12", "123", "a"));
        let bad = START.replace("audio/x-mulaw", "audio/x-alaw");
        let err = feed(&mut PlivoWire::default(), &bad).unwrap_err();
        assert!(matches!(err, ProtocolError::UnsupportedFormat(_)) && err.close_code() == 1007);
        let mulaw16 = START.replace("8000", "16000");
        assert!(matches!(
            feed(&mut PlivoWire::default(), &mulaw16),
            Err(ProtocolError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn outbound_json_shapes() {
        assert_eq!(PlivoWire::default().encode(&Outbound::Clear), None, "nothing before start");
        let mut w = started(START);
        assert_eq!(
            json_of(w.encode(&Outbound::Audio(vec![0xff, 0x7f, 0]))),
            json!({"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"/38A"}})
        );
        assert_eq!(
            json_of(w.encode(&Outbound::Mark("greeting".into()))),
            json!({"event":"checkpoint","streamId":SID,"name":"greeting"})
        );
        assert_eq!(json_of(w.encode(&Outbound::Clear)), json!({"event":"clearAudio","streamId":SID}));
        assert_eq!(w.encode(&Outbound::Hangup { reason: "bye".into() }), None);
        assert_eq!(w.encode(&Outbound::Transfer { to: "+1".into() }), None);
        let l16 = START.replace("audio/x-mulaw", "audio/x-l16").replace("8000", "16000");
        let mut w = started(&l16);
        assert_eq!(
            json_of(w.encode(&Outbound::Audio(vec![1, 0]))),
            json!({"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":16000,"payload":"AQA="}})
        );
    }

    #[test]
    fn errors_and_close_codes() {
        let cases: Vec<(PlivoWire, WsMessage, ProtocolError, u16)> = vec![
            (
                started(START),
                WsMessage::Binary(vec![0].into()),
                ProtocolError::UnexpectedBinary("plivo"),
                1003,
            ),
            (
                started(START),
                t(r#"{"event":"media","media":{"payload":"*"}}"#),
                ProtocolError::BadBase64,
                1007,
            ),
            (
                started(START),
                t(r#"{"event":"media","media":{"payload":[]}}"#),
                bad_field("media", "payload"),
                1007,
            ),
            (started(START), t(r#"{"event":"playedStream"}"#), bad_field("playedStream", "name"), 1007),
            (started(START), t(r#"{"event":"dtmf","dtmf":{"digit":""}}"#), bad_field("dtmf", "digit"), 1007),
            (PlivoWire::default(), t(&media("inbound", &[0])), ProtocolError::MediaBeforeStart, 1008),
            (started(START), t(START), ProtocolError::DuplicateStart, 1008),
            (
                PlivoWire::default(),
                t(r#"{"event":"start","start":{"callId":"c"}}"#),
                bad_field("start", "streamId"),
                1007,
            ),
            (
                PlivoWire::default(),
                t(r#"{"event":"start","start":{"streamId":"s","mediaFormat":{"sampleRate":true}}}"#),
                bad_field("start", "sampleRate"),
                1007,
            ),
        ];
        for (mut w, msg, want, code) in cases {
            let got = w.decode(msg, &mut Vec::new()).unwrap_err();
            assert_eq!(got, want);
            assert_eq!(got.close_code(), code);
        }
        let err = PlivoWire::default().decode(t("[1,"), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::NotJson(_)) && err.close_code() == 1007);
    }
}
