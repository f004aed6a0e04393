//! Switchboard's own media protocol (PROTOCOLS.md §2, `GET /v1/media`), for SIP bridges and browsers.
//!
//! Text control frames in: `start {codec: pcmu|pcma|l16|opus, sampleRate, agentId?, token?,
//! mode?: "loopback", from?, to?, …}` (every string member but `event`/`codec` lands in params),
//! `mark {name}`, `dtmf {digit}`, `stop`. Binary frames carry audio in the negotiated codec: G.711
//! bytes, 16-bit little-endian PCM, or one Opus packet per frame.
//!
//! Out: audio as binary frames; `mark {name}`, `clear`, `hangup {reason}`, `transfer {to}` as text.
//!
//! Rates: pcmu/pcma 8000 (the default when `sampleRate` is omitted); l16 8000/16000/24000/48000;
//! opus 8000/12000/16000/24000/48000.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::wire_util::{self as u, bad_field};
use super::{
    Encoding, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WireFormat, WsMessage,
};

/// Optional start members that must be strings when present.
const STRING_PARAMS: &[(&str, &str)] =
    &[("agentId", "agentId"), ("token", "token"), ("mode", "mode"), ("from", "from"), ("to", "to")];

#[derive(Debug, Default)]
pub struct NativeWire {
    format: Option<WireFormat>,
}

fn wire_format(obj: &Map<String, Value>) -> Result<WireFormat, ProtocolError> {
    let codec = obj.get("codec").and_then(Value::as_str).ok_or_else(|| bad_field("start", "codec"))?;
    let (encoding, rates): (Encoding, &[u32]) = match codec.to_ascii_lowercase().as_str() {
        "pcmu" => (Encoding::Pcmu, &[8000]),
        "pcma" => (Encoding::Pcma, &[8000]),
        "l16" => (Encoding::L16Le, &[8000, 16000, 24000, 48000]),
        "opus" => (Encoding::Opus, &[8000, 12000, 16000, 24000, 48000]),
        _ => {
            return Err(ProtocolError::UnsupportedFormat(format!(
                "codec {codec:?}; use pcmu, pcma, l16 or opus"
            )))
        }
    };
    let rate = match obj.get("sampleRate") {
        None | Some(Value::Null) if rates == [8000] => 8000,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad_field("start", "sampleRate"))?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad_field("start", "sampleRate"))?,
        _ => return Err(bad_field("start", "sampleRate")),
    };
    match u32::try_from(rate) {
        Ok(r) if rates.contains(&r) => Ok(WireFormat { encoding, sample_rate_hz: r }),
        _ => Err(ProtocolError::UnsupportedFormat(format!("{codec} at {rate} Hz; allowed: {rates:?}"))),
    }
}

impl NativeWire {
    fn start(&mut self, obj: &Map<String, Value>) -> Result<MediaEvent, ProtocolError> {
        if self.format.is_some() {
            return Err(ProtocolError::DuplicateStart);
        }
        for (key, field) in STRING_PARAMS {
            if obj.get(*key).is_some_and(|v| !v.is_string()) {
                return Err(bad_field("start", field));
            }
        }
        if obj.get("mode").is_some_and(|m| *m != "loopback") {
            return Err(bad_field("start", "mode"));
        }
        let format = wire_format(obj)?;
        let mut params = HashMap::new();
        u::string_fields(obj, &["event", "codec", "sampleRate"], &mut params);
        self.format = Some(format);
        Ok(MediaEvent::Start(StartInfo {
            stream_id: u::new_stream_id("native"),
            call_id: None,
            account_id: None,
            format,
            params,
        }))
    }

    fn text(&mut self, text: &str, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        // Control frames only (audio is binary), so a `Value` costs nothing that matters.
        let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let Value::Object(obj) = value else { return Err(bad_field("message", "event")) };
        let Some(event) = obj.get("event").and_then(Value::as_str) else {
            return Err(bad_field("message", "event"));
        };
        let started = self.format.is_some();
        match event {
            "start" => out.push(self.start(&obj)?),
            "mark" | "dtmf" if !started => return Err(ProtocolError::MediaBeforeStart),
            "mark" => {
                let name =
                    obj.get("name").and_then(Value::as_str).ok_or_else(|| bad_field("mark", "name"))?;
                out.push(MediaEvent::Mark(name.to_owned()));
            }
            "dtmf" => {
                out.push(MediaEvent::Dtmf(u::parse_digit("dtmf", obj.get("digit").and_then(Value::as_str))?))
            }
            "stop" if started => out.push(MediaEvent::Stop),
            _ => {} // stop before start, and future events
        }
        Ok(())
    }
}

impl Wire for NativeWire {
    fn protocol(&self) -> Protocol {
        Protocol::Native
    }

    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        match msg {
            WsMessage::Text(t) => self.text(t.as_str(), out),
            WsMessage::Binary(b) => {
                let format = self.format.ok_or(ProtocolError::MediaBeforeStart)?;
                if format.encoding == Encoding::L16Le && b.len() % 2 != 0 {
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
        Some(match item {
            Outbound::Audio(bytes) => WsMessage::Binary(bytes.clone().into()),
            Outbound::Mark(name) => u::json_event("mark", &[("name", name)]),
            Outbound::Clear => u::json_event("clear", &[]),
            Outbound::Hangup { reason } => u::json_event("hangup", &[("reason", reason)]),
            Outbound::Transfer { to } => u::json_event("transfer", &[("to", to)]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const START: &str = r#"{"event":"start","agentId":"agt_1","token":"tok","codec":"l16","sampleRate":16000,"mode":"loopback","from":"sip:alice@example.com","to":"+15550100","room":"blue"}"#;

    fn t(s: &str) -> WsMessage {
        WsMessage::Text(s.to_owned().into())
    }

    fn feed(w: &mut NativeWire, m: WsMessage) -> Result<Vec<MediaEvent>, ProtocolError> {
        let mut out = Vec::new();
        w.decode(m, &mut out).map(|_| out)
    }

    fn started(start: &str) -> NativeWire {
        let mut w = NativeWire::default();
        feed(&mut w, t(start)).unwrap();
        w
    }

    fn format_of(start: &str) -> Result<WireFormat, ProtocolError> {
        match feed(&mut NativeWire::default(), t(start))?.remove(0) {
            MediaEvent::Start(info) => Ok(info.format),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_session_round_trip() {
        let mut w = NativeWire::default();
        let ev = feed(&mut w, t(START)).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!("{ev:?}") };
        assert!(info.stream_id.starts_with("native-") && info.stream_id.len() == 7 + 26);
        assert_eq!(info.format, WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 });
        for (k, v) in [
            ("agentId", "agt_1"),
            ("token", "tok"),
            ("mode", "loopback"),
            ("to", "+15550100"),
            ("room", "blue"),
        ] {
            assert_eq!(info.params[k], v);
        }
        assert_eq!(info.params["from"], "sip:alice@example.com");
        assert!(!info.params.contains_key("codec") && !info.params.contains_key("event"));
        let frame = vec![3u8; 640];
        assert_eq!(
            feed(&mut w, WsMessage::Binary(frame.clone().into())).unwrap(),
            vec![MediaEvent::Audio(frame)]
        );
        assert_eq!(
            feed(&mut w, t(r##"{"event":"dtmf","digit":"#"}"##)).unwrap(),
            vec![MediaEvent::Dtmf('#')]
        );
        assert_eq!(
            feed(&mut w, t(r#"{"event":"mark","name":"m1"}"#)).unwrap(),
            vec![MediaEvent::Mark("m1".into())]
        );
        assert_eq!(feed(&mut w, t(r#"{"event":"ping"}"#)).unwrap(), vec![]);
        assert_eq!(feed(&mut w, t(r#"{"event":"stop"}"#)).unwrap(), vec![MediaEvent::Stop]);
    }

    #[test]
    fn codec_and_rate_validation() {
        let f = |encoding, sample_rate_hz| Ok(WireFormat { encoding, sample_rate_hz });
        assert_eq!(format_of(r#"{"event":"start","codec":"pcmu"}"#), f(Encoding::Pcmu, 8000));
        assert_eq!(
            format_of(r#"{"event":"start","codec":"PCMA","sampleRate":8000}"#),
            f(Encoding::Pcma, 8000)
        );
        assert_eq!(
            format_of(r#"{"event":"start","codec":"opus","sampleRate":48000}"#),
            f(Encoding::Opus, 48000)
        );
        assert_eq!(
            format_of(r#"{"event":"start","codec":"l16","sampleRate":"24000"}"#),
            f(Encoding::L16Le, 24000)
        );
        for bad in [
            r#"{"event":"start","codec":"pcmu","sampleRate":16000}"#,
            r#"{"event":"start","codec":"l16","sampleRate":44100}"#,
            r#"{"event":"start","codec":"opus","sampleRate":22050}"#,
            r#"{"event":"start","codec":"g729","sampleRate":8000}"#,
        ] {
            let err = format_of(bad).unwrap_err();
            assert!(matches!(err, ProtocolError::UnsupportedFormat(_)) && err.close_code() == 1007, "{bad}");
        }
        assert_eq!(format_of(r#"{"event":"start","codec":"l16"}"#), Err(bad_field("start", "sampleRate")));
        assert_eq!(format_of(r#"{"event":"start","sampleRate":8000}"#), Err(bad_field("start", "codec")));
        assert_eq!(
            format_of(r#"{"event":"start","codec":"pcmu","agentId":7}"#),
            Err(bad_field("start", "agentId"))
        );
        assert_eq!(
            format_of(r#"{"event":"start","codec":"pcmu","mode":"echo"}"#),
            Err(bad_field("start", "mode"))
        );
    }

    #[test]
    fn outbound_shapes() {
        assert_eq!(NativeWire::default().encode(&Outbound::Audio(vec![1])), None, "nothing before start");
        let mut w = started(START);
        let j = |m: Option<WsMessage>| match m {
            Some(WsMessage::Text(s)) => serde_json::from_str::<Value>(s.as_str()).unwrap(),
            other => panic!("{other:?}"),
        };
        match w.encode(&Outbound::Audio(vec![1, 2, 3, 4])) {
            Some(WsMessage::Binary(b)) => assert_eq!(&b[..], &[1, 2, 3, 4]),
            other => panic!("{other:?}"),
        }
        assert_eq!(j(w.encode(&Outbound::Mark("m\"1".into()))), json!({"event":"mark","name":"m\"1"}));
        assert_eq!(j(w.encode(&Outbound::Clear)), json!({"event":"clear"}));
        assert_eq!(
            j(w.encode(&Outbound::Hangup { reason: "done".into() })),
            json!({"event":"hangup","reason":"done"})
        );
        assert_eq!(
            j(w.encode(&Outbound::Transfer { to: "+15550100".into() })),
            json!({"event":"transfer","to":"+15550100"})
        );
    }

    #[test]
    fn errors_and_close_codes() {
        let pcmu = r#"{"event":"start","codec":"pcmu","sampleRate":8000}"#;
        let cases: Vec<(NativeWire, WsMessage, ProtocolError, u16)> = vec![
            (
                NativeWire::default(),
                WsMessage::Binary(vec![0; 160].into()),
                ProtocolError::MediaBeforeStart,
                1008,
            ),
            (
                NativeWire::default(),
                t(r#"{"event":"mark","name":"x"}"#),
                ProtocolError::MediaBeforeStart,
                1008,
            ),
            (started(START), t(START), ProtocolError::DuplicateStart, 1008),
            (started(START), WsMessage::Binary(vec![0; 3].into()), bad_field("binary audio", "length"), 1007),
            (started(START), t(r#"{"event":"mark"}"#), bad_field("mark", "name"), 1007),
            (started(START), t(r#"{"event":"dtmf","digit":5}"#), bad_field("dtmf", "digit"), 1007),
            (started(START), t(r#"["start"]"#), bad_field("message", "event"), 1007),
        ];
        for (mut w, msg, want, code) in cases {
            let got = w.decode(msg, &mut Vec::new()).unwrap_err();
            assert_eq!(got, want);
            assert_eq!(got.close_code(), code);
        }
        let err = NativeWire::default().decode(t("start please"), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::NotJson(_)) && err.close_code() == 1007);
        // G.711 frames of any length pass (one byte per sample); so do Opus packets.
        let mut w = started(pcmu);
        assert_eq!(feed(&mut w, WsMessage::Binary(vec![0xff; 161].into())).unwrap().len(), 1);
        assert_eq!(feed(&mut w, WsMessage::Ping(Vec::new().into())).unwrap(), vec![]);
    }
}
