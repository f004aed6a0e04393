//! Vonage Voice API websockets (PROTOCOLS.md §2, `GET /vonage/media`).
//!
//! In: first a text frame `{"event":"websocket:connected","content-type":"audio/l16;rate=16000", …}`
//! carrying the NCCO `connect` endpoint's custom headers (as top-level members, or inside a
//! `headers` object — both have been documented) → [`MediaEvent::Start`] with 16-bit little-endian
//! PCM at 8 or 16 kHz. Then binary frames of raw PCM (320 / 640 bytes per 20 ms; any whole number of
//! samples is accepted) and text events: `websocket:dtmf {digit, duration}` → DTMF,
//! `websocket:notify {payload: {name}}` → Mark (the audio queued before our `notify` has played),
//! `websocket:cleared` → Cleared; others ignored.
//!
//! Out: audio as binary frames, byte for byte; a mark as `{"action":"notify","payload":{"name":…}}`
//! (Vonage answers with `websocket:notify` carrying the payload once the audio before it has
//! played); a clear as `{"action":"clear"}` (Vonage drops its playback buffer and answers
//! `websocket:cleared`). Hang-up and transfer go through the Voice REST API.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::wire_util::{self as u, bad_field};
use super::{
    Encoding, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WireFormat, WsMessage,
};

const CONNECTED: &str = "websocket:connected";

/// Members of the connected frame that name the call; the first present becomes `call_id`.
const CALL_ID_KEYS: &[&str] = &["uuid", "call_uuid", "callUuid"];

#[derive(Debug, Default)]
pub struct VonageWire {
    /// Set by the connected frame.
    format: Option<WireFormat>,
}

/// `audio/l16;rate=16000` → 16000 (only 16-bit linear PCM, at 8 or 16 kHz).
fn parse_content_type(ct: &str) -> Result<u32, ProtocolError> {
    let mut parts = ct.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let rate = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("rate").then(|| v.trim().parse::<u32>().ok())?
    });
    match (mime.eq_ignore_ascii_case("audio/l16"), rate) {
        (true, Some(rate @ (8000 | 16000))) => Ok(rate),
        _ => Err(ProtocolError::UnsupportedFormat(format!(
            "Vonage content-type {ct:?}; only audio/l16;rate=8000 or rate=16000"
        ))),
    }
}

impl VonageWire {
    fn connected(&mut self, obj: &Map<String, Value>) -> Result<MediaEvent, ProtocolError> {
        if self.format.is_some() {
            return Err(ProtocolError::DuplicateStart);
        }
        let ct = obj.get("content-type").ok_or_else(|| bad_field(CONNECTED, "content-type"))?;
        let ct = ct.as_str().ok_or_else(|| bad_field(CONNECTED, "content-type"))?;
        let format = WireFormat { encoding: Encoding::L16Le, sample_rate_hz: parse_content_type(ct)? };

        let mut params = HashMap::new();
        if let Some(Value::Object(headers)) = obj.get("headers") {
            u::string_fields(headers, &[], &mut params);
        }
        u::string_fields(obj, &["event", "content-type"], &mut params);
        let call_id = CALL_ID_KEYS.iter().find_map(|k| params.get(*k)).cloned();

        self.format = Some(format);
        Ok(MediaEvent::Start(StartInfo {
            stream_id: u::new_stream_id("vonage"),
            call_id,
            account_id: None,
            format,
            params,
        }))
    }

    fn text(&mut self, text: &str, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        // Control frames are rare (connect, DTMF), so a `Value` is fine here; audio is binary.
        let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let Value::Object(obj) = value else { return Err(bad_field("message", "event")) };
        let event = match obj.get("event") {
            Some(Value::String(e)) => e.as_str(),
            _ => return Err(bad_field("message", "event")),
        };
        match event {
            CONNECTED => out.push(self.connected(&obj)?),
            "websocket:dtmf" if self.format.is_none() => return Err(ProtocolError::MediaBeforeStart),
            "websocket:dtmf" => {
                let digit = obj.get("digit").or_else(|| obj.get("dtmf").and_then(|d| d.get("digit")));
                out.push(MediaEvent::Dtmf(u::parse_digit(event, digit.and_then(Value::as_str))?));
            }
            "websocket:notify" if self.format.is_some() => {
                // Our own notify payloads carry the mark's name; others are not ours to report.
                let name = obj.get("payload").and_then(|p| p.get("name")).and_then(Value::as_str);
                if let Some(name) = name {
                    out.push(MediaEvent::Mark(name.to_string()));
                }
            }
            "websocket:cleared" if self.format.is_some() => out.push(MediaEvent::Cleared),
            _ => {} // future events
        }
        Ok(())
    }
}

impl Wire for VonageWire {
    fn protocol(&self) -> Protocol {
        Protocol::Vonage
    }

    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        match msg {
            WsMessage::Text(t) => self.text(t.as_str(), out),
            WsMessage::Binary(b) => {
                if self.format.is_none() {
                    return Err(ProtocolError::MediaBeforeStart);
                }
                if b.len() % 2 != 0 {
                    // 16-bit PCM: half a sample means the stream is corrupt.
                    return Err(bad_field("binary audio", "length"));
                }
                if !b.is_empty() {
                    out.push(MediaEvent::Audio(b.into()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn encode(&mut self, item: &Outbound) -> Option<WsMessage> {
        self.format?;
        match item {
            Outbound::Audio(bytes) => Some(WsMessage::Binary(bytes.clone().into())),
            Outbound::Mark(name) => {
                let mut text = String::with_capacity(48 + name.len());
                text.push_str(r#"{"action":"notify","payload":{"name":"#);
                u::push_json_str(&mut text, name);
                text.push_str("}}");
                Some(WsMessage::Text(text.into()))
            }
            Outbound::Clear => Some(WsMessage::Text(r#"{"action":"clear"}"#.into())),
            Outbound::Hangup { .. } | Outbound::Transfer { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vonage's documented first message, with custom headers from the NCCO `connect` action.
    const CONNECTED_MSG: &str = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","agentId":"agt_1","token":"tok","prop1":"value1"}"#;

    fn t(s: &str) -> WsMessage {
        WsMessage::Text(s.to_owned().into())
    }

    fn feed(w: &mut VonageWire, m: WsMessage) -> Result<Vec<MediaEvent>, ProtocolError> {
        let mut out = Vec::new();
        w.decode(m, &mut out).map(|_| out)
    }

    fn started() -> VonageWire {
        let mut w = VonageWire::default();
        feed(&mut w, t(CONNECTED_MSG)).unwrap();
        w
    }

    #[test]
    fn connected_frame_starts_the_stream() {
        let ev = feed(&mut VonageWire::default(), t(CONNECTED_MSG)).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!("{ev:?}") };
        assert!(
            info.stream_id.starts_with("vonage-") && info.stream_id.len() == 7 + 26,
            "{}",
            info.stream_id
        );
        assert_eq!(info.call_id.as_deref(), Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab"));
        assert_eq!(info.format, WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 });
        assert_eq!(info.params["agentId"], "agt_1");
        assert_eq!(info.params["token"], "tok");
        assert_eq!(info.params["prop1"], "value1");
        assert!(!info.params.contains_key("event") && !info.params.contains_key("content-type"));
    }

    #[test]
    fn headers_object_and_8khz() {
        let msg = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=8000","headers":{"agentId":"a2","n":5}}"#;
        let ev = feed(&mut VonageWire::default(), t(msg)).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!() };
        assert_eq!(info.format.sample_rate_hz, 8000);
        assert_eq!(info.params.get("agentId").map(String::as_str), Some("a2"));
        assert_eq!(info.call_id, None);
        assert_eq!(info.format.frame_bytes(), Some(320));
    }

    #[test]
    fn binary_frames_and_dtmf() {
        let mut w = started();
        let frame: Vec<u8> = (0..640u32).map(|i| i as u8).collect();
        assert_eq!(
            feed(&mut w, WsMessage::Binary(frame.clone().into())).unwrap(),
            vec![MediaEvent::Audio(frame)]
        );
        // Inbound frames need not be exactly 640 bytes, only whole samples.
        assert_eq!(
            feed(&mut w, WsMessage::Binary(vec![1, 0].into())).unwrap(),
            vec![MediaEvent::Audio(vec![1, 0])]
        );
        assert_eq!(feed(&mut w, WsMessage::Binary(Vec::new().into())).unwrap(), vec![]);
        let dtmf = r#"{"event":"websocket:dtmf","digit":"5","duration":260}"#;
        assert_eq!(feed(&mut w, t(dtmf)).unwrap(), vec![MediaEvent::Dtmf('5')]);
        assert_eq!(feed(&mut w, t(r#"{"event":"websocket:future-thing"}"#)).unwrap(), vec![]);
        assert_eq!(feed(&mut w, WsMessage::Pong(Vec::new().into())).unwrap(), vec![]);
    }

    #[test]
    fn outbound() {
        assert_eq!(
            VonageWire::default().encode(&Outbound::Audio(vec![0; 640])),
            None,
            "nothing before start"
        );
        let mut w = started();
        let frame: Vec<u8> = (0..640u32).map(|i| (i * 7) as u8).collect();
        match w.encode(&Outbound::Audio(frame.clone())) {
            Some(WsMessage::Binary(b)) => assert_eq!(&b[..], &frame[..]),
            other => panic!("{other:?}"),
        }
        let json = |m: Option<WsMessage>| -> Value {
            match m {
                Some(WsMessage::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            json(w.encode(&Outbound::Mark("utt-\"1".into()))),
            serde_json::json!({"action": "notify", "payload": {"name": "utt-\"1"}})
        );
        assert_eq!(json(w.encode(&Outbound::Clear)), serde_json::json!({"action": "clear"}));
        for item in [Outbound::Hangup { reason: "x".into() }, Outbound::Transfer { to: "+1".into() }] {
            assert_eq!(w.encode(&item), None, "{item:?}");
        }
    }

    #[test]
    fn notify_echoes_are_marks_and_cleared_is_acknowledged() {
        let mut w = started();
        let ev = feed(&mut w, t(r#"{"event":"websocket:notify","payload":{"name":"utt-7"}}"#)).unwrap();
        assert_eq!(ev, vec![MediaEvent::Mark("utt-7".into())]);
        assert_eq!(feed(&mut w, t(r#"{"event":"websocket:notify","payload":{"other":1}}"#)).unwrap(), vec![]);
        assert_eq!(feed(&mut w, t(r#"{"event":"websocket:cleared"}"#)).unwrap(), vec![MediaEvent::Cleared]);
    }

    #[test]
    fn errors_and_close_codes() {
        let cases: Vec<(VonageWire, WsMessage, ProtocolError, u16)> = vec![
            (
                VonageWire::default(),
                WsMessage::Binary(vec![0; 640].into()),
                ProtocolError::MediaBeforeStart,
                1008,
            ),
            (
                VonageWire::default(),
                t(r#"{"event":"websocket:dtmf","digit":"1"}"#),
                ProtocolError::MediaBeforeStart,
                1008,
            ),
            (started(), WsMessage::Binary(vec![0; 641].into()), bad_field("binary audio", "length"), 1007),
            (started(), t(CONNECTED_MSG), ProtocolError::DuplicateStart, 1008),
            (
                started(),
                t(r#"{"event":"websocket:dtmf","digit":"55"}"#),
                bad_field("websocket:dtmf", "digit"),
                1007,
            ),
            (started(), t(r#"{"digit":"5"}"#), bad_field("message", "event"), 1007),
            (
                VonageWire::default(),
                t(r#"{"event":"websocket:connected"}"#),
                bad_field(CONNECTED, "content-type"),
                1007,
            ),
        ];
        for (mut w, msg, want, code) in cases {
            let got = w.decode(msg, &mut Vec::new()).unwrap_err();
            assert_eq!(got, want);
            assert_eq!(got.close_code(), code);
        }
        let mut w = VonageWire::default();
        let not_json = w.decode(t("hello"), &mut Vec::new()).unwrap_err();
        assert!(matches!(not_json, ProtocolError::NotJson(_)) && not_json.close_code() == 1007);
        for ct in ["audio/l16;rate=44100", "audio/pcmu;rate=8000", "audio/l16"] {
            let msg = format!(r#"{{"event":"websocket:connected","content-type":"{ct}"}}"#);
            let err = VonageWire::default().decode(t(&msg), &mut Vec::new()).unwrap_err();
            assert!(matches!(err, ProtocolError::UnsupportedFormat(_)) && err.close_code() == 1007, "{ct}");
        }
    }
}
