//! Telnyx media streaming (PROTOCOLS.md §2, `GET /telnyx/media`): Twilio-like JSON text frames in
//! snake_case.
//!
//! In: `connected` (ignored), `start {stream_id, start: {call_control_id, client_state?, from?, to?,
//! custom_parameters?, media_format: {encoding, sample_rate, channels}}}`, `media {media: {track,
//! chunk, timestamp, payload}}`, `dtmf {dtmf: {digit}}`, `mark {mark: {name}}`, `error` (logged),
//! `stop`. Out: `media {media: {payload}}`, `mark {mark: {name}}`, `clear` — Telnyx's documented
//! outbound frames carry no `stream_id` (the socket identifies the stream).
//!
//! Codecs: PCMU, PCMA, L16, OPUS. The payload is the raw RTP payload, so L16 is in network byte
//! order (big-endian, RFC 3551 §4.5.11) → [`Encoding::L16Be`]. G722 and AMR-WB are refused.
//!
//! Telnyx does not guarantee frame order, so inbound audio passes a small reorder buffer keyed by
//! `media.chunk`: chunks are released in order, duplicates and late chunks are dropped, and a gap
//! still open when more than [`REORDER_FRAMES`] later chunks are waiting is skipped (never a
//! stall). A jump of more than 64 chunks either way is taken as renumbering and resynchronises.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::wire_util::{self as u, bad_field};
use super::{
    Encoding, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WireFormat, WsMessage,
};

/// Chunks held back waiting for a missing one (8 × 20 ms = 160 ms of added delay at worst).
pub const REORDER_FRAMES: usize = 8;
/// A chunk number this far from the expected one is a renumbering, not reordering: resync on it.
const RESYNC_DISTANCE: u64 = 64;

const FIELDS: &[&str] = &[
    "event",
    "stream_id",
    "start",
    "call_control_id",
    "client_state",
    "from",
    "to",
    "media_format",
    "encoding",
    "sample_rate",
    "channels",
    "media",
    "track",
    "chunk",
    "payload",
    "dtmf",
    "digit",
    "mark",
    "name",
];

#[derive(Debug, Default)]
pub struct TelnyxWire {
    stream_id: Option<String>,
    reorder: Reorder,
}

/// In-order release of chunks, bounded look-ahead.
#[derive(Debug, Default)]
struct Reorder {
    /// The chunk number released next; set by the first chunk seen.
    next: Option<u64>,
    /// Chunks ahead of `next`, sorted by number; at most `REORDER_FRAMES` between calls.
    pending: Vec<(u64, Vec<u8>)>,
}

impl Reorder {
    fn push(&mut self, chunk: u64, audio: Vec<u8>, out: &mut Vec<MediaEvent>) {
        let next = *self.next.get_or_insert(chunk);
        if chunk.abs_diff(next) > RESYNC_DISTANCE {
            self.flush(out);
            self.next = Some(chunk);
        } else if chunk < next {
            return; // a duplicate of a released chunk, or one that arrived after we skipped it
        }
        if Some(chunk) == self.next {
            out.push(MediaEvent::Audio(audio));
            self.next = Some(chunk.wrapping_add(1));
            self.drain(out);
            return;
        }
        match self.pending.binary_search_by_key(&chunk, |p| p.0) {
            Ok(_) => return, // duplicate of a waiting chunk
            Err(i) => {
                if self.pending.capacity() == 0 {
                    self.pending.reserve_exact(REORDER_FRAMES + 1);
                }
                self.pending.insert(i, (chunk, audio));
            }
        }
        if self.pending.len() > REORDER_FRAMES {
            self.skip_gap(out);
        }
    }

    /// Releases waiting chunks while they continue the sequence.
    fn drain(&mut self, out: &mut Vec<MediaEvent>) {
        while let (Some(next), Some(&(first, _))) = (self.next, self.pending.first()) {
            if first != next {
                break;
            }
            out.push(MediaEvent::Audio(self.pending.remove(0).1));
            self.next = Some(next.wrapping_add(1));
        }
    }

    /// Gives up on the missing chunk(s) before the first waiting one.
    fn skip_gap(&mut self, out: &mut Vec<MediaEvent>) {
        if let Some(&(first, _)) = self.pending.first() {
            self.next = Some(first);
            self.drain(out);
        }
    }

    /// Releases everything still waiting, in order (end of stream or resync).
    fn flush(&mut self, out: &mut Vec<MediaEvent>) {
        while !self.pending.is_empty() {
            self.skip_gap(out);
        }
    }
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream_id: Option<Cow<'a, str>>,
    start: Option<Start>,
    #[serde(borrow)]
    media: Option<Media<'a>>,
    #[serde(borrow)]
    dtmf: Option<Dtmf<'a>>,
    #[serde(borrow)]
    mark: Option<Mark<'a>>,
    /// `error` frames: logged only.
    payload: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Start {
    call_control_id: Option<String>,
    client_state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    stream_id: Option<String>,
    /// An object of strings, or Call Control's `[{name, value}]` list.
    custom_parameters: Option<serde_json::Value>,
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: Option<String>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    sample_rate: Option<u64>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    channels: Option<u64>,
}

#[derive(Deserialize)]
struct Media<'a> {
    #[serde(borrow)]
    track: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "u::lenient_u64")]
    chunk: Option<u64>,
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

fn wire_format(mf: &MediaFormat) -> Result<WireFormat, ProtocolError> {
    let enc = mf.encoding.as_deref().ok_or_else(|| bad_field("start", "encoding"))?;
    let rate = mf.sample_rate.map(|r| u32::try_from(r).unwrap_or(0));
    let unsupported = |why: &str| ProtocolError::UnsupportedFormat(format!("Telnyx {enc}: {why}"));
    if mf.channels.unwrap_or(1) != 1 {
        return Err(unsupported("only mono streams are supported"));
    }
    let (encoding, rates): (Encoding, &[u32]) = match enc.to_ascii_uppercase().as_str() {
        "PCMU" => (Encoding::Pcmu, &[8000]),
        "PCMA" => (Encoding::Pcma, &[8000]),
        "L16" => (Encoding::L16Be, &[8000, 16000, 24000, 48000]),
        "OPUS" => (Encoding::Opus, &[8000, 12000, 16000, 24000, 48000]),
        "G722" => return Err(unsupported("G722 is not supported; stream PCMU, PCMA, L16 or OPUS")),
        _ => return Err(unsupported("unknown codec; stream PCMU, PCMA, L16 or OPUS")),
    };
    let rate = match (rate, encoding) {
        (Some(r), _) => r,
        (None, Encoding::Pcmu | Encoding::Pcma) => 8000,
        (None, _) => return Err(bad_field("start", "sample_rate")),
    };
    if !rates.contains(&rate) {
        return Err(unsupported(&format!("sample rate {rate} Hz is not supported")));
    }
    Ok(WireFormat { encoding, sample_rate_hz: rate })
}

fn params(start: &Start) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (key, value) in [("from", &start.from), ("to", &start.to), ("client_state", &start.client_state)] {
        if let Some(v) = value {
            params.insert(key.to_owned(), v.clone());
        }
    }
    match &start.custom_parameters {
        Some(serde_json::Value::Object(map)) => u::string_fields(map, &[], &mut params),
        Some(serde_json::Value::Array(list)) => {
            for item in list {
                if let (Some(k), Some(v)) = (item["name"].as_str(), item["value"].as_str()) {
                    params.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        _ => {}
    }
    params
}

impl TelnyxWire {
    fn start(&mut self, msg: Msg<'_>) -> Result<MediaEvent, ProtocolError> {
        if self.stream_id.is_some() {
            return Err(ProtocolError::DuplicateStart);
        }
        let start = msg.start.ok_or_else(|| bad_field("start", "start"))?;
        let stream_id = msg
            .stream_id
            .map(Cow::into_owned)
            .or_else(|| start.stream_id.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad_field("start", "stream_id"))?;
        let mf = start.media_format.as_ref().ok_or_else(|| bad_field("start", "media_format"))?;
        let format = wire_format(mf)?;
        self.stream_id = Some(stream_id.clone());
        Ok(MediaEvent::Start(StartInfo {
            stream_id,
            params: params(&start),
            call_id: start.call_control_id,
            account_id: None,
            format,
        }))
    }
}

impl Wire for TelnyxWire {
    fn protocol(&self) -> Protocol {
        Protocol::Telnyx
    }

    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError> {
        let Some(msg): Option<Msg> = u::parse_message(&msg, "telnyx", FIELDS, is_known)? else {
            return Ok(());
        };
        let event = msg.event.as_deref().ok_or_else(|| bad_field("message", "event"))?;
        let started = self.stream_id.is_some();
        match event {
            "start" => out.push(self.start(msg)?),
            "media" | "dtmf" | "mark" if !started => return Err(ProtocolError::MediaBeforeStart),
            "media" => {
                let media = msg.media.ok_or_else(|| bad_field("media", "media"))?;
                let payload = media.payload.ok_or_else(|| bad_field("media", "payload"))?;
                if u::is_inbound(media.track.as_deref()) {
                    let audio = u::decode_b64(&payload)?;
                    match media.chunk {
                        Some(chunk) => self.reorder.push(chunk, audio, out),
                        None => out.push(MediaEvent::Audio(audio)),
                    }
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
            "stop" if started => {
                self.reorder.flush(out);
                out.push(MediaEvent::Stop);
            }
            "error" => tracing::warn!(payload = ?msg.payload, "telnyx media stream error frame"),
            _ => {} // connected, stop before start, and future events
        }
        Ok(())
    }

    fn encode(&mut self, item: &Outbound) -> Option<WsMessage> {
        self.stream_id.as_ref()?;
        match item {
            Outbound::Audio(bytes) => {
                const HEAD: &str = r#"{"event":"media","media":{"payload":""#;
                let mut s = String::with_capacity(HEAD.len() + u::b64_len(bytes) + 3);
                s.push_str(HEAD);
                u::push_b64(&mut s, bytes);
                s.push_str("\"}}");
                Some(u::text(s))
            }
            Outbound::Mark(name) => {
                let mut s = String::with_capacity(40 + name.len());
                s.push_str(r#"{"event":"mark","mark":{"name":"#);
                u::push_json_str(&mut s, name);
                s.push_str("}}");
                Some(u::text(s))
            }
            Outbound::Clear => Some(u::json_event("clear", &[])),
            Outbound::Hangup { .. } | Outbound::Transfer { .. } => None,
        }
    }
}

fn is_known(event: &str) -> bool {
    matches!(event, "connected" | "start" | "media" | "dtmf" | "mark" | "stop" | "error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    // Examples from Telnyx's "Media Streaming over WebSockets" guide.
    const SID: &str = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC";
    const START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","from":"+13122010094","to":"+13122123456","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},"stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC"}"#;
    const DTMF: &str = r#"{"event":"dtmf","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","occurred_at":"2022-07-11T16:21:43.426000Z","sequence_number":"5","dtmf":{"digit":"1"}}"#;
    const MARK: &str = r#"{"event":"mark","sequence_number":"4","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","mark":{"name":"my label"}}"#;
    const STOP: &str = r#"{"event":"stop","sequence_number":"5","stop":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"},"stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC"}"#;

    /// A `media` frame for chunk `n` (as Telnyx sends it: a string) whose payload is 160 × `n`.
    fn media(n: u64) -> String {
        let mut payload = String::new();
        u::push_b64(&mut payload, &[n as u8; 160]);
        format!(
            r#"{{"event":"media","sequence_number":"{}","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"{payload}"}},"stream_id":"{SID}"}}"#,
            n + 2,
            n * 20
        )
    }

    fn feed(w: &mut TelnyxWire, s: &str) -> Result<Vec<MediaEvent>, ProtocolError> {
        let mut out = Vec::new();
        w.decode(WsMessage::Text(s.to_owned().into()), &mut out).map(|_| out)
    }

    fn started() -> TelnyxWire {
        let mut w = TelnyxWire::default();
        feed(&mut w, START).unwrap();
        w
    }

    /// Feeds chunks in the given order; returns the chunk numbers released, in release order.
    fn released(w: &mut TelnyxWire, chunks: &[u64]) -> Vec<u8> {
        let mut got = Vec::new();
        for &c in chunks {
            for ev in feed(w, &media(c)).unwrap() {
                let MediaEvent::Audio(a) = ev else { panic!("{ev:?}") };
                got.push(a[0]);
            }
        }
        got
    }

    fn start_with(format: &str) -> Result<Vec<MediaEvent>, ProtocolError> {
        let msg = format!(
            r#"{{"event":"start","stream_id":"s1","start":{{"call_control_id":"v3:c","media_format":{format}}}}}"#
        );
        feed(&mut TelnyxWire::default(), &msg)
    }

    #[test]
    fn full_session_round_trip() {
        let mut w = TelnyxWire::default();
        assert_eq!(feed(&mut w, r#"{"event":"connected","version":"1.0.0"}"#).unwrap(), vec![]);
        let ev = feed(&mut w, START).unwrap();
        let MediaEvent::Start(info) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(info.stream_id, SID);
        assert_eq!(
            info.call_id.as_deref(),
            Some("v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ")
        );
        assert_eq!(info.format, WireFormat::PCMU_8K);
        assert_eq!(info.params["to"], "+13122123456");
        assert_eq!(info.params["client_state"], "aGF2ZSBhIG5pY2UgZGF5ID1d");
        assert_eq!(feed(&mut w, &media(1)).unwrap(), vec![MediaEvent::Audio(vec![1; 160])]);
        assert_eq!(feed(&mut w, DTMF).unwrap(), vec![MediaEvent::Dtmf('1')]);
        assert_eq!(feed(&mut w, MARK).unwrap(), vec![MediaEvent::Mark("my label".into())]);
        assert_eq!(feed(&mut w, STOP).unwrap(), vec![MediaEvent::Stop]);
        let outbound = media(2).replace(r#""track":"inbound""#, r#""track":"outbound""#);
        assert_eq!(feed(&mut w, &outbound).unwrap(), vec![]);
    }

    #[test]
    fn codecs() {
        let fmt = |s: &str| match start_with(s).unwrap().remove(0) {
            MediaEvent::Start(info) => info.format,
            other => panic!("{other:?}"),
        };
        let f = |encoding, sample_rate_hz| WireFormat { encoding, sample_rate_hz };
        assert_eq!(fmt(r#"{"encoding":"PCMA","sample_rate":"8000","channels":1}"#), f(Encoding::Pcma, 8000));
        assert_eq!(fmt(r#"{"encoding":"L16","sample_rate":16000,"channels":1}"#), f(Encoding::L16Be, 16000));
        assert_eq!(fmt(r#"{"encoding":"OPUS","sample_rate":16000}"#), f(Encoding::Opus, 16000));
        let g722 = start_with(r#"{"encoding":"G722","sample_rate":16000}"#).unwrap_err();
        assert!(matches!(&g722, ProtocolError::UnsupportedFormat(m) if m.contains("G722")), "{g722:?}");
        assert_eq!(g722.close_code(), 1007);
        assert!(matches!(start_with(r#"{"encoding":"AMR-WB"}"#), Err(ProtocolError::UnsupportedFormat(_))));
        assert!(matches!(
            start_with(r#"{"encoding":"PCMU","channels":2}"#),
            Err(ProtocolError::UnsupportedFormat(_))
        ));
        assert_eq!(start_with(r#"{"encoding":"L16"}"#), Err(bad_field("start", "sample_rate")));
        assert_eq!(start_with(r#"{"sample_rate":8000}"#), Err(bad_field("start", "encoding")));
    }

    #[test]
    fn custom_parameters_as_object_or_list() {
        for custom in [
            r#"{"agentId":"a1","token":"t1"}"#,
            r#"[{"name":"agentId","value":"a1"},{"name":"token","value":"t1"}]"#,
        ] {
            let msg = START.replace(r#""from":"#, &format!(r#""custom_parameters":{custom},"from":"#));
            let ev = feed(&mut TelnyxWire::default(), &msg).unwrap();
            let MediaEvent::Start(info) = &ev[0] else { panic!() };
            assert_eq!((info.params["agentId"].as_str(), info.params["token"].as_str()), ("a1", "t1"));
        }
    }

    #[test]
    fn an_extreme_chunk_number_does_not_panic() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(u64::MAX, vec![1], &mut out);
        r.push(0, vec![2], &mut out);
        assert_eq!(out.len(), 2, "released in wrapped order: {out:?}");
    }

    #[test]
    fn reorders_out_of_order_chunks() {
        assert_eq!(released(&mut started(), &[1, 3, 2, 4, 6, 5, 7]), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn drops_duplicates_and_late_chunks() {
        assert_eq!(released(&mut started(), &[1, 2, 2, 1, 4, 4, 3, 3, 5]), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn skips_a_gap_that_outlasts_the_buffer() {
        let mut w = started();
        // Chunk 2 is lost: 3..=10 wait (8 frames), the 9th waiting chunk releases them all.
        assert_eq!(released(&mut w, &[1, 3, 4, 5, 6, 7, 8, 9, 10]), vec![1]);
        assert_eq!(released(&mut w, &[11]), (3..=11).collect::<Vec<u8>>());
        assert_eq!(released(&mut w, &[2, 12]), vec![12], "the skipped chunk is dropped when it turns up");
    }

    #[test]
    fn stop_flushes_and_renumbering_resyncs() {
        let mut w = started();
        assert_eq!(released(&mut w, &[1, 3, 5]), vec![1]);
        let ev = feed(&mut w, STOP).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[2], MediaEvent::Stop);
        let mut w = started();
        assert_eq!(released(&mut w, &[500, 501, 1, 2]), vec![244, 245, 1, 2]);
    }

    #[test]
    fn outbound_json_shapes() {
        assert_eq!(TelnyxWire::default().encode(&Outbound::Clear), None, "nothing before start");
        let mut w = started();
        let j = |m: Option<WsMessage>| match m.unwrap() {
            WsMessage::Text(t) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            j(w.encode(&Outbound::Audio(vec![0xff, 0x7f, 0]))),
            json!({"event":"media","media":{"payload":"/38A"}})
        );
        assert_eq!(j(w.encode(&Outbound::Mark("m1".into()))), json!({"event":"mark","mark":{"name":"m1"}}));
        assert_eq!(j(w.encode(&Outbound::Clear)), json!({"event":"clear"}));
        assert_eq!(w.encode(&Outbound::Hangup { reason: "bye".into() }), None);
        assert_eq!(w.encode(&Outbound::Transfer { to: "+1".into() }), None);
    }

    #[test]
    fn errors_and_close_codes() {
        let check = |mut w: TelnyxWire, msg: WsMessage, want: ProtocolError, code: u16| {
            let got = w.decode(msg, &mut Vec::new()).unwrap_err();
            match want {
                ProtocolError::NotJson(_) => assert!(matches!(got, ProtocolError::NotJson(_)), "{got:?}"),
                _ => assert_eq!(got, want),
            }
            assert_eq!(got.close_code(), code);
        };
        let t = |s: &str| WsMessage::Text(s.to_owned().into());
        check(started(), t("{"), ProtocolError::NotJson(String::new()), 1007);
        check(started(), WsMessage::Binary(vec![0].into()), ProtocolError::UnexpectedBinary("telnyx"), 1003);
        check(
            started(),
            t(r#"{"event":"media","media":{"chunk":"9","payload":"%%"}}"#),
            ProtocolError::BadBase64,
            1007,
        );
        check(
            started(),
            t(r#"{"event":"media","media":{"chunk":"x","payload":"AA=="}}"#),
            bad_field("media", "chunk"),
            1007,
        );
        check(started(), t(r#"{"event":"dtmf","dtmf":{}}"#), bad_field("dtmf", "digit"), 1007);
        check(TelnyxWire::default(), t(&media(1)), ProtocolError::MediaBeforeStart, 1008);
        check(started(), t(START), ProtocolError::DuplicateStart, 1008);
        check(
            TelnyxWire::default(),
            t(r#"{"event":"start","start":{}}"#),
            bad_field("start", "stream_id"),
            1007,
        );
        assert_eq!(feed(&mut started(), r#"{"event":"error","payload":{"code":100002}}"#), Ok(vec![]));
    }
}
