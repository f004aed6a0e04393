//! The client wire against the server's own protocol state machines (`transport::*Wire`): what
//! the load tester sends decodes to the intended events, and what the server encodes parses back.

use super::*;
use crate::transport::{MediaEvent, Outbound, Wire, WsMessage};

fn to_server(m: &Message) -> WsMessage {
    match m {
        Message::Text(t) => WsMessage::Text(t.as_str().into()),
        Message::Binary(b) => WsMessage::Binary(b.clone()),
        other => panic!("{other:?}"),
    }
}

fn from_server(m: WsMessage) -> Message {
    match m {
        WsMessage::Text(t) => Message::text(t.as_str()),
        WsMessage::Binary(b) => Message::Binary(b),
        other => panic!("{other:?}"),
    }
}

fn decode(server: &mut dyn Wire, m: &Message) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    server.decode(to_server(m), &mut out).unwrap_or_else(|e| panic!("{e}: {m:?}"));
    out
}

fn params() -> Vec<(String, String)> {
    vec![
        ("agentId".into(), "agt_1".into()),
        ("token".into(), "sb_key".into()),
        ("mode".into(), "loopback".into()),
    ]
}

fn cases() -> Vec<(Protocol, WireFormat)> {
    let f = |encoding, sample_rate_hz| WireFormat { encoding, sample_rate_hz };
    vec![
        (Protocol::Twilio, WireFormat::PCMU_8K),
        (Protocol::Telnyx, WireFormat::PCMU_8K),
        (Protocol::Telnyx, f(Encoding::L16Be, 16000)),
        (Protocol::Plivo, WireFormat::PCMU_8K),
        (Protocol::Plivo, f(Encoding::L16Le, 16000)),
        (Protocol::Vonage, f(Encoding::L16Le, 16000)),
        (Protocol::Native, WireFormat::PCMU_8K),
        (Protocol::Native, f(Encoding::Opus, 48000)),
    ]
}

#[test]
fn every_protocol_round_trips_through_the_server_wire() {
    for (protocol, format) in cases() {
        let ids = CallIds::new(protocol, "T", 7);
        let mut client = ClientWire::new(protocol, format, ids);
        let mut server = protocol.wire();
        let label = format!("{protocol:?} {format:?}");

        // Opening: exactly one Start with the parameters and the format.
        let starts: Vec<MediaEvent> =
            client.opening(&params()).iter().flat_map(|m| decode(&mut *server, m)).collect();
        assert_eq!(starts.len(), 1, "{label}: {starts:?}");
        let MediaEvent::Start(info) = &starts[0] else { panic!("{label}: {starts:?}") };
        assert_eq!(info.format, format, "{label}");
        for (k, v) in params() {
            assert_eq!(info.params.get(&k), Some(&v), "{label}: {k}");
        }

        // Audio, in order, byte for byte.
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 160]).collect();
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            got.extend(decode(&mut *server, &client.media(i as u64, f)));
        }
        assert_eq!(got, frames.iter().cloned().map(MediaEvent::Audio).collect::<Vec<_>>(), "{label}");

        assert_eq!(decode(&mut *server, &client.dtmf('#', 200)), vec![MediaEvent::Dtmf('#')], "{label}");

        // Server audio, marks and clear parse back; the mark answer is the server's Mark.
        let payload = vec![9u8; 160];
        let audio = from_server(server.encode(&Outbound::Audio(payload.clone())).unwrap());
        assert_eq!(client.parse(&audio), Ok(ServerEvent::Audio(payload)), "{label}");
        let mark = from_server(server.encode(&Outbound::Mark("utt-3".into())).unwrap());
        let Ok(ServerEvent::Mark { name, answer }) = client.parse(&mark) else { panic!("{label}: {mark:?}") };
        assert_eq!(name, "utt-3");
        assert_eq!(decode(&mut *server, &answer), vec![MediaEvent::Mark("utt-3".into())], "{label}");
        let clear = from_server(server.encode(&Outbound::Clear).unwrap());
        let Ok(ServerEvent::Clear { ack }) = client.parse(&clear) else { panic!("{label}: {clear:?}") };
        match protocol {
            Protocol::Plivo | Protocol::Vonage => {
                assert_eq!(decode(&mut *server, &ack.expect("acknowledged")), vec![MediaEvent::Cleared])
            }
            _ => assert!(ack.is_none(), "{label}"),
        }

        // The caller hangs up.
        match client.stop() {
            Some(stop) => assert_eq!(decode(&mut *server, &stop), vec![MediaEvent::Stop], "{label}"),
            None => assert_eq!(protocol, Protocol::Vonage),
        }
    }
}

#[test]
fn native_hangup_and_transfer() {
    let mut client =
        ClientWire::new(Protocol::Native, WireFormat::PCMU_8K, CallIds::new(Protocol::Native, "T", 1));
    let mut server = Protocol::Native.wire();
    for m in client.opening(&params()) {
        decode(&mut *server, &m);
    }
    let hangup = from_server(server.encode(&Outbound::Hangup { reason: "done".into() }).unwrap());
    assert_eq!(client.parse(&hangup), Ok(ServerEvent::Hangup { reason: "done".into() }));
    let transfer = from_server(server.encode(&Outbound::Transfer { to: "+15550100".into() }).unwrap());
    assert_eq!(client.parse(&transfer), Ok(ServerEvent::Transfer { to: "+15550100".into() }));
}

#[test]
fn faults_and_ignored_messages() {
    let mut twilio =
        ClientWire::new(Protocol::Twilio, WireFormat::PCMU_8K, CallIds::new(Protocol::Twilio, "T", 1));
    assert!(twilio.parse(&Message::text("not json")).unwrap_err().contains("unparseable"));
    assert!(twilio.parse(&Message::binary(vec![0; 160])).unwrap_err().contains("binary"));
    assert!(twilio.parse(&Message::text(r#"{"event":"media","media":{}}"#)).unwrap_err().contains("payload"));
    assert!(twilio.parse(&Message::text(r#"{"event":"media","media":{"payload":"@@"}}"#)).is_err());
    assert!(twilio.parse(&Message::text(r#"{"event":"mark","mark":{}}"#)).is_err());
    assert_eq!(twilio.parse(&Message::text(r#"{"event":"future"}"#)), Ok(ServerEvent::Ignored));
    assert_eq!(twilio.parse(&Message::Ping(Vec::new().into())), Ok(ServerEvent::Ignored));
    let mut vonage = ClientWire::new(
        Protocol::Vonage,
        WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 },
        CallIds::new(Protocol::Vonage, "T", 1),
    );
    // Vonage's notify payload is echoed as it came, whatever it holds.
    let Ok(ServerEvent::Mark { answer, .. }) =
        vonage.parse(&Message::text(r#"{"action":"notify","payload":{"name":"m","extra":[1,2]}}"#))
    else {
        panic!()
    };
    let v: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(v, json!({"event": "websocket:notify", "payload": {"name": "m", "extra": [1, 2]}}));
}
