//! Twilio Media Streams (PROTOCOLS.md §2, `GET /twilio/media`): every frame is JSON text.
//!
//! In: `connected` (ignored), `start` → [`MediaEvent::Start`], `media` → audio (caller track only),
//! `dtmf`, `mark` (a mark we sent was played or cleared), `stop`. Twilio sends numbers as strings
//! (`sequenceNumber`, `chunk`, `timestamp`); none of them is needed here. Audio is always μ-law 8 kHz.
//!
//! Out: `media {streamSid, media: {payload}}`, `mark {streamSid, mark: {name}}`, `clear {streamSid}`.
//! Hang-up and transfer have no in-band form (REST call update), so they encode to `None`.

use std::borrow::Cow;

use serde::Deserialize;

use super::wire_util::{self as u, bad_field};
use super::{
    Encoding, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WireFormat, WsMessage,
};

/// Field names reported in [`ProtocolError::BadField`].
const FIELDS: &[&str] = &[
    "event",
    "streamSid",
    "start",
    "accountSid",
    "callSid",
    "customParameters",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "channels",
    "media",
    "track",
    "payload",
    "dtmf",
    "digit",
    "mark",
    "name",
];

#[derive(Debug, Default)]
pub struct TwilioWire {
    /// `streamSid` from the start message; `None` until then.
    stream_sid: Option<String>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "streamSid")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    start: Option<Start<'a>>,
    #[serde(borrow)]
    media: Option<Media<'a>>,
    #[serde(borrow)]
    dtmf: Option<Dtmf<'a>>,
    #[serde(borrow)]
    mark: Option<Mark<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(borrow)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    account_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    call_sid: Option<Cow<'a, str>>,
    custom_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow)]
    media_format: Option<MediaFormat<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormat<'a> {
    #[serde(borrow)]
    encoding: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    sample_rate: Option<u64>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    channels: Option<u64>,
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

#[derive(Deserialize)]
struct Mark<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

impl TwilioWire {
    fn start(&mut self, msg: Msg<'_>) -> Result<MediaEvent, ProtocolError> {
        if self.stream_sid.is_some() {
            return Err(ProtocolError::DuplicateStart);
        }
        let start = msg.start.ok_or_else(|| bad_field("start", "start"))?;
        let stream_id = start
            .stream_sid
            .or(msg.stream_sid)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad_field("start", "streamSid"))?
            .into_owned();
        let format = start.media_format.ok_or_else(|| bad_field("start", "mediaFormat"))?;
        let encoding = format.encoding.ok_or_else(|| bad_field("start", "encoding"))?;
        let rate = format.sample_rate.unwrap_or(8000);
        let channels = format.channels.unwrap_or(1);
        if !encoding.eq_ignore_ascii_case("audio/x-mulaw") || rate != 8000 || channels != 1 {
            return Err(ProtocolError::UnsupportedFormat(format!(
                "Twilio media format {encoding} at {rate} Hz, {channels} channel(s); only audio/x-mulaw 8000 Hz mono"
            )));
        }
        let mut params = std::collections::HashMap::new();
        if let Some(custom) = &start.custom_parameters {
            u::string_fields(custom, &[], &mut params);
        }
        self.stream_sid = Some(stream_id.clone());
        Ok(MediaEvent::Start(StartInfo {
            stream_id,
            call_id: start.call_sid.map(Cow::into_owned),
            account_id: start.account_sid.map(Cow::into_owned),
            format: WireFormat { encoding: Encoding::Pcmu, sample_rate_hz: 8000 },
            params,
        }))
    }
}

impl Wire for TwilioWire {
    fn protocol(&self) -> Protocol {
        Protocol::Twilio
    }

    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        let Some(msg): Option<Msg> = u::parse_message(&msg, "twilio", FIELDS, is_known)? else {
            return Ok(());
        };
        let event = msg.event.as_deref().ok_or_else(|| bad_field("message", "event"))?;
        let started = self.stream_sid.is_some();
        match event {
            "start" => out.push(self.start(msg)?),
            "media" | "dtmf" | "mark" if !started => return Err(ProtocolError::MediaBeforeStart),
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
            "mark" => {
                let name = msg.mark.and_then(|m| m.name).ok_or_else(|| bad_field("mark", "name"))?;
                out.push(MediaEvent::Mark(name.into_owned()));
            }
            // A stop before start carries nothing to act on; Twilio closes the socket next.
            "stop" if started => out.push(MediaEvent::Stop),
            _ => {} // connected, stop before start, and future events
        }
        Ok(())
    }

    fn encode(&mut self, item: &Outbound) -> Option<WsMessage> {
        let sid = self.stream_sid.as_deref()?;
        match item {
            Outbound::Audio(bytes) => {
                const HEAD: &str = r#"{"event":"media","streamSid":"#;
                const MID: &str = r#","media":{"payload":""#;
                let mut s = String::with_capacity(HEAD.len() + sid.len() + MID.len() + u::b64_len(bytes) + 8);
                s.push_str(HEAD);
                u::push_json_str(&mut s, sid);
                s.push_str(MID);
                u::push_b64(&mut s, bytes);
                s.push_str("\"}}");
                Some(u::text(s))
            }
            Outbound::Mark(name) => {
                let mut s = String::with_capacity(64 + sid.len() + name.len());
                s.push_str(r#"{"event":"mark","streamSid":"#);
                u::push_json_str(&mut s, sid);
                s.push_str(r#","mark":{"name":"#);
                u::push_json_str(&mut s, name);
                s.push_str("}}");
                Some(u::text(s))
            }
            Outbound::Clear => Some(u::json_event("clear", &[("streamSid", sid)])),
            Outbound::Hangup { .. } | Outbound::Transfer { .. } => None,
        }
    }
}

fn is_known(event: &str) -> bool {
    matches!(event, "connected" | "start" | "media" | "dtmf" | "mark" | "stop")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::close_code;
    use serde_json::{json, Value};

    // Examples from Twilio's "Media Streams - WebSocket Messages" page.
    const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA123","tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"agentId":"agt_1","token":"tok"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;
    /// The doc's `media` example with a 160-byte (20 ms) μ-law payload: 0x00..0x9f.
    fn media() -> String {
        let mut payload = String::new();
        u::push_b64(&mut payload, &(0..160u8).collect::<Vec<_>>());
        format!(
            r#"{{"event":"media","sequenceNumber":"3","media":{{"track":"inbound","chunk":"1","timestamp":"5","payload":"{payload}"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}}"#
        )
    }
    const DTMF: &str = r#"{"event":"dtmf","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
    const MARK: &str = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","mark":{"name":"my label"}}"#;
    const STOP: &str = r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","stop":{"accountSid":"AC123","callSid":"CA123"}}"#;

    fn txt(s: &str) -> WsMessage {
        WsMessage::Text(s.to_owned().into())
    }

    fn feed(w: &mut TwilioWire, s: &str) -> Result<Vec<MediaEvent>, ProtocolError> {
        let mut out = Vec::new();
        w.decode(txt(s), &mut out).map(|_| out)
    }

    fn started() -> TwilioWire {
        let mut w = TwilioWire::default();
        feed(&mut w, START).unwrap();
        w
    }

    fn json_of(m: WsMessage) -> Value {
        match m {
            WsMessage::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn full_session_round_trip() {
        let mut w = TwilioWire::default();
        assert_eq!(feed(&mut w, CONNECTED).unwrap(), vec![]);
        let ev = feed(&mut w, START).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(info.stream_id, "MZ18ad3ab5a668481ce02b83e7395059f0");
        assert_eq!(info.call_id.as_deref(), Some("CA123"));
        assert_eq!(info.account_id.as_deref(), Some("AC123"));
        assert_eq!(info.format, WireFormat::PCMU_8K);
        assert_eq!(info.params["agentId"], "agt_1");
        assert_eq!(info.params["token"], "tok");
        assert_eq!(feed(&mut w, &media()).unwrap(), vec![MediaEvent::Audio((0..160u8).collect())]);
        assert_eq!(feed(&mut w, DTMF).unwrap(), vec![MediaEvent::Dtmf('1')]);
        assert_eq!(feed(&mut w, MARK).unwrap(), vec![MediaEvent::Mark("my label".into())]);
        assert_eq!(feed(&mut w, STOP).unwrap(), vec![MediaEvent::Stop]);
    }

    #[test]
    fn outbound_track_and_unknown_events_are_ignored() {
        let mut w = started();
        let echo = media().replace(r#""track":"inbound""#, r#""track":"outbound""#);
        assert_eq!(feed(&mut w, &echo).unwrap(), vec![]);
        let no_track = r#"{"event":"media","media":{"payload":"AAE="}}"#;
        assert_eq!(feed(&mut w, no_track).unwrap(), vec![MediaEvent::Audio(vec![0, 1])]);
        assert_eq!(feed(&mut w, r#"{"event":"future","media":7}"#).unwrap(), vec![]);
        assert_eq!(w.decode(WsMessage::Ping(vec![1].into()), &mut vec![]), Ok(()));
        assert_eq!(w.decode(WsMessage::Close(None), &mut vec![]), Ok(()));
    }

    #[test]
    fn outbound_json_shapes() {
        let mut w = TwilioWire::default();
        assert_eq!(w.encode(&Outbound::Audio(vec![0xff; 160])), None, "nothing before start");
        let mut w = started();
        let sid = "MZ18ad3ab5a668481ce02b83e7395059f0";
        let media = json_of(w.encode(&Outbound::Audio(vec![0xff, 0x7f, 0])).unwrap());
        assert_eq!(media, json!({"event":"media","streamSid":sid,"media":{"payload":"/38A"}}));
        let mark = json_of(w.encode(&Outbound::Mark("turn \"1\"".into())).unwrap());
        assert_eq!(mark, json!({"event":"mark","streamSid":sid,"mark":{"name":"turn \"1\""}}));
        assert_eq!(json_of(w.encode(&Outbound::Clear).unwrap()), json!({"event":"clear","streamSid":sid}));
        assert_eq!(w.encode(&Outbound::Hangup { reason: "done".into() }), None);
        assert_eq!(w.encode(&Outbound::Transfer { to: "+15550100".into() }), None);
    }

    #[test]
    fn errors_and_close_codes() {
        let cases: Vec<(TwilioWire, WsMessage, ProtocolError, u16)> = vec![
            (
                TwilioWire::default(),
                txt("not json"),
                ProtocolError::NotJson(String::new()),
                close_code::INVALID_PAYLOAD,
            ),
            (
                TwilioWire::default(),
                WsMessage::Binary(vec![0; 160].into()),
                ProtocolError::UnexpectedBinary("twilio"),
                close_code::UNSUPPORTED_DATA,
            ),
            (started(), txt(r#"{"event":"media","media":{"payload":"!!"}}"#), ProtocolError::BadBase64, 1007),
            (started(), txt(r#"{"event":"media","media":{}}"#), bad_field("media", "payload"), 1007),
            (
                started(),
                txt(r#"{"event":"media","media":{"payload":42}}"#),
                bad_field("media", "payload"),
                1007,
            ),
            (started(), txt(r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#), bad_field("dtmf", "digit"), 1007),
            (started(), txt(r#"{"event":"mark","mark":{}}"#), bad_field("mark", "name"), 1007),
            (started(), txt(r#"{"streamSid":"x"}"#), bad_field("message", "event"), 1007),
            (
                TwilioWire::default(),
                txt(&media()),
                ProtocolError::MediaBeforeStart,
                close_code::POLICY_VIOLATION,
            ),
            (TwilioWire::default(), txt(DTMF), ProtocolError::MediaBeforeStart, 1008),
            (started(), txt(START), ProtocolError::DuplicateStart, 1008),
            (
                TwilioWire::default(),
                txt(&START.replace("audio/x-mulaw", "audio/x-l16")),
                ProtocolError::UnsupportedFormat(String::new()),
                1007,
            ),
            (
                TwilioWire::default(),
                txt(
                    r#"{"event":"start","start":{"callSid":"CA1","mediaFormat":{"encoding":"audio/x-mulaw"}}}"#,
                ),
                bad_field("start", "streamSid"),
                1007,
            ),
            (
                TwilioWire::default(),
                txt(r#"{"event":"start","start":{"streamSid":"MZ1"}}"#),
                bad_field("start", "mediaFormat"),
                1007,
            ),
            (
                TwilioWire::default(),
                txt(r#"{"event":"start","start":{"streamSid":"MZ1","mediaFormat":{"sampleRate":"x"}}}"#),
                bad_field("start", "sampleRate"),
                1007,
            ),
        ];
        for (mut w, msg, want, code) in cases {
            let got = w.decode(msg, &mut Vec::new()).unwrap_err();
            assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want), "{got:?}");
            if !matches!(want, ProtocolError::NotJson(_) | ProtocolError::UnsupportedFormat(_)) {
                assert_eq!(got, want);
            }
            assert_eq!(got.close_code(), code, "{got:?}");
        }
    }

    #[test]
    fn stop_before_start_is_ignored() {
        assert_eq!(feed(&mut TwilioWire::default(), STOP).unwrap(), vec![]);
    }
}
