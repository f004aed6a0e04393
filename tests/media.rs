//! The media plane over real websockets: loopback calls per protocol (codec, frame size, pacing
//! by sequence, marks, clear, hang-up), call records, admission, tokens and bad input — with a
//! good call running alongside the bad ones to show the server keeps serving.

mod common;

use std::time::Duration;

use common::media::{b64, native, plivo, telnyx, twilio, vonage, Client, Fixture};
use common::{ended_call, TestServer};
use serde_json::json;
use sqlx::Row;
use switchboard::audio::codec::mulaw_decode;
use tokio_tungstenite::tungstenite::Message;

const NORMAL: u16 = 1000;
const UNSUPPORTED: u16 = 1003;
const INVALID: u16 = 1007;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;
const TRY_LATER: u16 = 1013;

fn twilio_echo(name: &str) -> Option<Message> {
    Some(twilio::mark(name))
}

fn native_echo(name: &str) -> Option<Message> {
    Some(native::mark(name))
}

fn no_echo(_: &str) -> Option<Message> {
    None
}

/// One row of the calls table, as the tests look at it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct CallRow {
    id: String,
    status: String,
    transport: Option<String>,
    direction: String,
    agent_id: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    end_reason: Option<String>,
}

/// Every call row, oldest first.
async fn calls(s: &TestServer) -> Vec<CallRow> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let rows = sqlx::query(
        "SELECT id, status, transport, direction, agent_id, started_at, ended_at, end_reason FROM calls \
         ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| CallRow {
            id: r.get(0),
            status: r.get(1),
            transport: r.get(2),
            direction: r.get(3),
            agent_id: r.get(4),
            started_at: r.get(5),
            ended_at: r.get(6),
            end_reason: r.get(7),
        })
        .collect()
}

/// Waits until the call rows satisfy `done` (the record is written just after the socket closes).
async fn calls_when(s: &TestServer, done: impl Fn(&[CallRow]) -> bool) -> Vec<CallRow> {
    for _ in 0..100 {
        let c = calls(s).await;
        if done(&c) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    calls(s).await
}

/// Goertzel power ratio of `freq` against its neighbours ±150 Hz, and RMS, of 16-bit samples.
fn tone_stats(samples: &[i16], rate: u32, freq: f64) -> (f64, f64) {
    let power = |f: f64| {
        let w = 2.0 * std::f64::consts::PI * f / f64::from(rate);
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
    };
    let ratio = power(freq) / (power(freq - 150.0) + power(freq + 150.0) + 1.0);
    let rms = (samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    (ratio, rms)
}

/// The audible part of what came back (frames that are not all silence), decoded.
fn audible(frames: &[Vec<u8>], mut decode: impl FnMut(&[u8]) -> Vec<i16>) -> Vec<i16> {
    frames.iter().map(|f| decode(f)).filter(|pcm| pcm.iter().any(|&x| x.abs() > 200)).flatten().collect()
}

fn l16(bytes: &[u8]) -> Vec<i16> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

#[tokio::test]
async fn twilio_loopback_returns_the_audio_paced_with_marks_clear_and_a_call_record() {
    let s = TestServer::start().await;
    let tone = Fixture::load("tone-440.mulaw-8k.wav");
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(Message::text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)).await;
    c.send(twilio::start(json!({"token": s.key, "mode": "loopback"}))).await;
    let media: Vec<Message> = tone.frames().iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    let sent_frames = media.len();
    c.stream(media, Duration::from_millis(400)).await;

    // Whole μ-law frames only.
    assert!(c.got.frames.len() >= sent_frames, "{} frames back for {sent_frames} sent", c.got.frames.len());
    assert!(c.got.frames.iter().all(|f| f.len() == 160), "every frame is 160 bytes of μ-law");
    // A mark after every 1 s utterance: consecutive marks are exactly 50 frames apart.
    let marks: Vec<_> = c.got.marks.iter().filter(|(n, _)| n.starts_with("utt-")).collect();
    assert!(marks.len() >= 2, "marks: {:?}", c.got.marks);
    assert_eq!(marks[0].0, "utt-1");
    assert_eq!(marks[1].1 - marks[0].1, 50, "paced as 50 frames per second of audio: {:?}", c.got.marks);
    // The tone came back: same frequency, same level within 3 dB.
    let back = audible(&c.got.frames, |f| f.iter().map(|&b| mulaw_decode(b)).collect());
    let sent: Vec<i16> = tone.data.iter().map(|&b| mulaw_decode(b)).collect();
    let (ratio, rms_back) = tone_stats(&back, 8000, 440.0);
    let (_, rms_sent) = tone_stats(&sent, 8000, 440.0);
    assert!(ratio > 100.0, "440 Hz dominates what came back (ratio {ratio:.1})");
    let db = 20.0 * (rms_back / rms_sent).log10();
    assert!(db.abs() < 3.0, "level changed by {db:.2} dB");
    assert!(back.len() >= sent.len() * 9 / 10, "{} of {} samples came back", back.len(), sent.len());

    // A DTMF key in loopback is a barge-in: the server sends `clear`.
    c.send(twilio::dtmf('5')).await;
    c.collect_for(Duration::from_millis(300)).await;
    assert_eq!(c.got.clears.len(), 1, "clear honoured");

    // The caller hangs up.
    c.send(twilio::stop()).await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (NORMAL, "caller hung up"));
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    let row = &rows[0];
    assert_eq!(
        (row.status.as_str(), row.transport.as_deref(), row.direction.as_str()),
        ("completed", Some("twilio"), "inbound")
    );
    assert_eq!(row.agent_id, None, "loopback needs no agent");
    assert!(row.started_at.as_ref().unwrap() <= row.ended_at.as_ref().unwrap());
    assert_eq!(row.end_reason.as_deref(), Some("caller hung up"));
}

/// `listen=true`: the caller is still heard back, and the denoiser + VAD ran on their audio —
/// the call record has the speech events of the one utterance, near its annotated bounds.
#[tokio::test]
async fn twilio_loopback_with_listen_records_the_vad_speech_events() {
    let s = TestServer::start().await;
    let hello = Fixture::load("caller-hello.mulaw-8k.wav");
    let annotation =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures/caller-hello.json"));
    let annotation: serde_json::Value = serde_json::from_str(&annotation.unwrap()).unwrap();
    let turn = &annotation["turns"][0];
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "mode": "loopback", "listen": "true"}))).await;
    let media: Vec<Message> = hello.frames().iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    let sent = media.len();
    // The tail is silence on the line: the VAD's hangover ends the utterance.
    let silence = (0..50).map(|i| twilio::media(sent + i, &[0xFF; 160]));
    c.stream(media.into_iter().chain(silence).collect(), Duration::from_millis(400)).await;
    c.send(twilio::stop()).await;
    c.closed().await;

    let back = audible(&c.got.frames, |f| f.iter().map(|&b| mulaw_decode(b)).collect());
    assert!(back.len() >= 8000 * 3, "the caller's speech came back ({} samples)", back.len());
    let rec = ended_call(&s).await;
    assert_eq!(rec.count("speech_started"), 1, "{:?}", rec.events);
    assert_eq!(rec.count("speech_ended"), 1, "{:?}", rec.events);
    let (start, end) = (rec.first("speech_started").unwrap().at_ms, rec.first("speech_ended").unwrap().at_ms);
    let (want_start, want_end) = (turn["start_ms"].as_i64().unwrap(), turn["end_ms"].as_i64().unwrap());
    assert!((start - want_start).abs() <= 250, "speech started at {start} ms, annotated {want_start}");
    assert!((end - want_end).abs() <= 400, "speech ended at {end} ms, annotated {want_end}");

    // Plain loopback does not listen: no speech events.
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "mode": "loopback"}))).await;
    let media: Vec<Message> = hello.frames().iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    c.stream(media, Duration::from_millis(400)).await;
    c.send(twilio::stop()).await;
    c.closed().await;
    let rec = ended_call(&s).await;
    assert!(rec.events.is_empty(), "{:?}", rec.events);
}

/// A μ-law 8 kHz loopback call on a JSON protocol: whole 160-byte frames, the tone back, marks
/// 50 frames apart and echoed the protocol's way; the record names the transport.
async fn mulaw_loopback_with_key(
    key: &str,
    path: &str,
    start: Message,
    media: fn(usize, &[u8]) -> Message,
    echo: common::media::Echo,
    transport: &str,
) {
    let key = key.to_string();
    let s = TestServer::start_with(move |c| c.api_key = Some(key)).await;
    let tone = Fixture::load("tone-440.mulaw-8k.wav");
    let mut c = Client::connect(s.addr, path, echo).await;
    c.send(start).await;
    let frames: Vec<Message> = tone.frames().iter().enumerate().map(|(i, f)| media(i, f)).collect();
    c.stream(frames, Duration::from_millis(400)).await;
    assert!(c.got.close.is_none(), "{transport}: {:?}", c.got.close);
    assert!(
        c.got.frames.len() >= 100 && c.got.frames.iter().all(|f| f.len() == 160),
        "{transport}: μ-law frames"
    );
    let back = audible(&c.got.frames, |f| f.iter().map(|&b| mulaw_decode(b)).collect());
    assert!(tone_stats(&back, 8000, 440.0).0 > 100.0, "{transport}: tone came back");
    let marks: Vec<_> = c.got.marks.iter().filter(|(n, _)| n.starts_with("utt-")).collect();
    assert!(marks.len() >= 2 && marks[1].1 - marks[0].1 == 50, "{transport}: {:?}", c.got.marks);
    drop(c);
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows[0].transport.as_deref(), Some(transport));
}

fn telnyx_echo(name: &str) -> Option<Message> {
    Some(telnyx::mark(name))
}

fn plivo_echo(name: &str) -> Option<Message> {
    Some(plivo::played(name))
}

#[tokio::test]
async fn telnyx_loopback_pcmu() {
    let key = "sb_test_telnyx";
    let start = telnyx::start(json!({"token": key, "mode": "loopback"}), "PCMU", 8000);
    mulaw_loopback_with_key(key, "/telnyx/media", start, telnyx::media, telnyx_echo, "telnyx").await;
}

#[tokio::test]
async fn plivo_loopback_mulaw_with_extra_headers() {
    let key = "sb_test_plivo";
    let start = plivo::start(&format!("token={key};mode=loopback"));
    mulaw_loopback_with_key(key, "/plivo/media", start, plivo::media, plivo_echo, "plivo").await;
}

#[tokio::test]
async fn native_l16_loopback_with_in_band_hangup() {
    let s = TestServer::start().await;
    let tone = Fixture::load("tone-440.l16-16k.wav");
    let mut c = Client::connect(s.addr, "/v1/media", native_echo).await;
    c.send(native::start(json!({"token": s.key, "mode": "loopback", "codec": "l16", "sampleRate": 16000})))
        .await;
    let frames: Vec<Message> = tone.frames().into_iter().map(Message::binary).collect();
    c.stream(frames, Duration::from_millis(400)).await;
    assert!(c.got.frames.len() >= 100);
    assert!(c.got.frames.iter().all(|f| f.len() == 640), "whole 20 ms L16 16 kHz frames");
    let back = audible(&c.got.frames, l16);
    let (ratio, _) = tone_stats(&back, 16000, 440.0);
    assert!(ratio > 100.0, "440 Hz ratio {ratio:.1}");
    assert!(c.got.marks.iter().any(|(n, _)| n == "utt-1"), "{:?}", c.got.marks);

    // '0' in loopback: the agent side hangs up — in-band on the native protocol.
    c.send(native::dtmf('0')).await;
    let (code, _) = c.closed().await;
    assert_eq!(code, NORMAL);
    assert_eq!(c.got.control.len(), 1, "{:?}", c.got.control);
    assert_eq!(c.got.control[0]["event"], "hangup");
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows[0].status, "completed");
    assert_eq!(rows[0].direction, "web");
    assert!(rows[0].end_reason.as_deref().unwrap().starts_with("agent hung up"), "{:?}", rows[0].end_reason);
}

#[tokio::test]
async fn native_opus_48k_loopback() {
    use switchboard::audio::codec::{Decoder, Encoder};
    use switchboard::transport::{Encoding, WireFormat};
    let s = TestServer::start().await;
    let format = WireFormat { encoding: Encoding::Opus, sample_rate_hz: 48_000 };
    let mut enc = Encoder::new(format).unwrap();
    // 2 s of 440 Hz at 48 kHz, −12 dBFS, as 20 ms Opus packets.
    let pcm: Vec<i16> = (0..96_000)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48_000.0).sin()) as i16)
        .collect();
    let packets: Vec<Message> = pcm
        .chunks(960)
        .map(|frame| {
            let mut out = vec![0u8; 4000];
            let n = enc.encode(frame, &mut out).unwrap();
            Message::binary(out[..n].to_vec())
        })
        .collect();
    let mut c = Client::connect(s.addr, "/v1/media", native_echo).await;
    c.send(native::start(json!({"token": s.key, "mode": "loopback", "codec": "opus", "sampleRate": 48000})))
        .await;
    c.stream(packets, Duration::from_millis(400)).await;
    assert!(c.got.close.is_none(), "{:?}", c.got.close);
    assert!(c.got.frames.len() >= 100, "one packet per 20 ms: {}", c.got.frames.len());
    let mut dec = Decoder::new(format).unwrap();
    let mut buf = vec![0i16; 5760];
    let back = audible(&c.got.frames, |p| {
        let n = dec.decode(p, &mut buf).expect("server sends valid Opus");
        assert_eq!(n, 960, "each packet decodes to 20 ms");
        buf[..n].to_vec()
    });
    let (ratio, _) = tone_stats(&back, 48_000, 440.0);
    assert!(ratio > 50.0, "440 Hz survives Opus → 16 kHz → Opus (ratio {ratio:.1})");
}

#[tokio::test]
async fn native_transfer_goes_in_band() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.addr, "/v1/media", native_echo).await;
    c.send(native::start(json!({"token": s.key, "mode": "loopback", "codec": "pcmu", "sampleRate": 8000, "transferTo": "+14155550100"}))).await;
    c.collect_for(Duration::from_millis(100)).await;
    c.send(native::dtmf('*')).await;
    let (code, _) = c.closed().await;
    assert_eq!(code, NORMAL);
    assert_eq!(c.got.control.first().map(|v| v["to"].clone()), Some(json!("+14155550100")));
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows[0].end_reason.as_deref(), Some("transferred to +14155550100"));
}

fn vonage_echo(name: &str) -> Option<Message> {
    Some(vonage::notified(name))
}

#[tokio::test]
async fn vonage_loopback_binary_frames_notify_marks_and_clear() {
    let s = TestServer::start().await;
    let tone = Fixture::load("tone-440.l16-16k.wav");
    let mut c = Client::connect(s.addr, "/vonage/media", vonage_echo).await;
    c.send(vonage::connected(16000, json!({"token": s.key, "mode": "loopback"}))).await;
    let frames: Vec<Message> = tone.frames().into_iter().map(Message::binary).collect();
    c.stream(frames, Duration::from_millis(400)).await;
    assert!(c.got.frames.len() >= 100);
    assert!(c.got.frames.iter().all(|f| f.len() == 640), "exactly the negotiated frame size");
    // Marks travel as `notify` commands, 50 frames apart, and come back as `websocket:notify`.
    let marks: Vec<_> = c.got.marks.iter().filter(|(n, _)| n.starts_with("utt-")).collect();
    assert!(marks.len() >= 2 && marks[1].1 - marks[0].1 == 50, "{:?}", c.got.marks);
    let back = audible(&c.got.frames, l16);
    assert!(tone_stats(&back, 16000, 440.0).0 > 100.0);
    // Barge-in: `{"action":"clear"}`.
    c.send(vonage::dtmf('5')).await;
    c.collect_for(Duration::from_millis(300)).await;
    assert_eq!(c.got.clears.len(), 1, "clear sent in-band");
    // The gateway drops the TCP connection without a closing handshake.
    drop(c);
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!((rows[0].status.as_str(), rows[0].transport.as_deref()), ("completed", Some("vonage")));
    assert_eq!(rows[0].end_reason.as_deref(), Some("connection lost without a close frame"));
}

/// Starts a good loopback call on Twilio and keeps it streaming in the background.
async fn good_call(s: &TestServer, frames: usize) -> tokio::task::JoinHandle<Client> {
    let tone = Fixture::load("tone-440.mulaw-8k.wav");
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "mode": "loopback"}))).await;
    let media: Vec<Message> =
        tone.frames().iter().cycle().take(frames).enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    tokio::spawn(async move {
        c.stream(media, Duration::from_millis(300)).await;
        c
    })
}

#[tokio::test]
async fn bad_input_closes_with_a_reason_and_other_calls_carry_on() {
    let s = TestServer::start().await;
    let good = good_call(&s, 150).await;

    let start = || twilio::start(json!({"token": s.key, "mode": "loopback"}));
    let cases: Vec<(&str, Vec<Message>, u16, &str)> = vec![
        ("non-JSON text", vec![Message::text("hello?")], INVALID, "invalid JSON"),
        ("binary before start", vec![Message::binary(vec![0u8; 160])], UNSUPPORTED, "binary"),
        ("media before start", vec![twilio::media(0, &[0xFF; 160])], POLICY, "before the start"),
        ("no token", vec![twilio::start(json!({"mode": "loopback"}))], POLICY, "token"),
        (
            "bad key",
            vec![twilio::start(json!({"token": "sb_live_nope", "mode": "loopback"}))],
            POLICY,
            "API key",
        ),
        (
            "used media token",
            vec![twilio::start(json!({"token": "mt_unknown", "mode": "loopback"}))],
            POLICY,
            "media token",
        ),
        (
            "unknown agent",
            vec![twilio::start(json!({"token": s.key, "agentId": "agt_nope"}))],
            POLICY,
            "unknown agent",
        ),
        ("no agent", vec![twilio::start(json!({"token": s.key}))], POLICY, "agent"),
        (
            "invalid base64",
            vec![
                start(),
                Message::text(r#"{"event":"media","streamSid":"MZ0001","media":{"payload":"!!!"}}"#),
            ],
            INVALID,
            "base64",
        ),
        ("binary after start", vec![start(), Message::binary(vec![1u8; 160])], UNSUPPORTED, "binary"),
        ("second start", vec![start(), start()], POLICY, "second start"),
        (
            "oversize message",
            vec![
                start(),
                Message::text(format!(
                    r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                    "A".repeat(70_000)
                )),
            ],
            TOO_BIG,
            "",
        ),
    ];
    for (name, msgs, code, needle) in cases {
        let mut c = Client::connect(s.addr, "/twilio/media", no_echo).await;
        for m in msgs {
            c.send(m).await;
        }
        let (got_code, reason) = c.closed().await;
        assert_eq!(got_code, code, "{name}: closed with {got_code} {reason:?}");
        assert!(reason.contains(needle), "{name}: reason {reason:?} lacks {needle:?}");
    }

    // Unknown events and odd-sized μ-law payloads are tolerated; the call goes on.
    let mut c = Client::connect(s.addr, "/twilio/media", no_echo).await;
    c.send(start()).await;
    c.send(Message::text(r#"{"event":"dancing","streamSid":"MZ0001"}"#)).await;
    c.send(twilio::media(0, &[0xFF; 7])).await;
    c.collect_for(Duration::from_millis(200)).await;
    assert!(c.got.close.is_none(), "still open: {:?}", c.got.close);
    assert!(!c.got.frames.is_empty(), "still playing out");

    // A flood faster than real time: kept open, excess dropped and counted.
    for i in 0..1500 {
        c.send(twilio::media(i, &[0xFF; 160])).await;
    }
    c.collect_for(Duration::from_millis(300)).await;
    assert!(c.got.close.is_none(), "flood does not kill the call: {:?}", c.got.close);
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with(r#"switchboard_frames_dropped_total{queue="ingress"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "ingress drops counted:\n{metrics}");
    c.send(twilio::stop()).await;
    assert_eq!(c.closed().await.0, NORMAL);

    // The good call was unaffected: it got its audio back, paced, and ended normally.
    let good = good.await.unwrap();
    assert!(good.got.frames.len() >= 150, "good call got {} frames", good.got.frames.len());
    assert!(good.got.close.is_none(), "good call was not closed: {:?}", good.got.close);
    let back = audible(&good.got.frames, |f| f.iter().map(|&b| mulaw_decode(b)).collect());
    assert!(tone_stats(&back, 8000, 440.0).0 > 100.0);

    // Nothing half-created: the refused streams left no call rows; the failed ones are failed.
    let rows = calls(&s).await;
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.status == "failed")
        .map(|r| r.end_reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        failed.len(),
        4,
        "base64, binary, second start and oversize after start fail their call: {failed:?}"
    );
    assert_eq!(rows.len(), 4 + 1 + 1, "4 failed + the tolerant call + the good call: {rows:?}");
}

#[tokio::test]
async fn capacity_refuses_with_try_again_later_and_readiness_says_so() {
    let s = TestServer::start_with(|c| c.max_calls = 1).await;
    let first = good_call(&s, 40).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, body) = s.call_as(None, reqwest::Method::GET, "/readyz", None).await;
    assert_eq!((st.as_u16(), body["status"].as_str()), (503, Some("at capacity")));

    let mut second = Client::connect(s.addr, "/twilio/media", no_echo).await;
    second.send(twilio::start(json!({"token": s.key, "mode": "loopback"}))).await;
    let (code, reason) = second.closed().await;
    assert_eq!(code, TRY_LATER);
    assert!(reason.contains("capacity"), "{reason}");

    let first = first.await.unwrap();
    assert!(first.got.close.is_none());
    drop(first);
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows.len(), 1, "the refused call left no record");
    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"switchboard_calls_total{transport="twilio",outcome="refused"} 1"#),
        "{metrics}"
    );
    // Capacity is free again.
    let (st, _) = s.call_as(None, reqwest::Method::GET, "/readyz", None).await;
    assert_eq!(st.as_u16(), 200);
}

#[tokio::test]
async fn agent_calls_by_number_and_by_one_time_media_token() {
    let s = TestServer::start().await;
    let agent = s.agent(json!({"name": "Desk"})).await;
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let number = s.number("+14155550123").await;
    s.post(&format!("/v1/agents/{agent_id}/numbers"), json!({"numberId": number["id"]})).await;

    // API key + the called number picks the agent.
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "from": "+442071838750", "to": "+14155550123"}))).await;
    c.collect_for(Duration::from_millis(200)).await;
    assert!(c.got.close.is_none(), "{:?}", c.got.close);
    assert!(!c.got.frames.is_empty(), "playout runs (silence) for an agent call");
    c.send(twilio::stop()).await;
    assert_eq!(c.closed().await.0, NORMAL);
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows[0].agent_id.as_deref(), Some(agent_id.as_str()));

    // A media token minted for a ringing call: redeemed once.
    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let new = switchboard::store::NewCall {
        agent_id: Some(agent_id.clone()),
        direction: "inbound".into(),
        ..Default::default()
    };
    let (ringing, token) = store.create_ringing_call(&new, chrono::Duration::seconds(60)).await.unwrap();
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": token}))).await;
    c.collect_for(Duration::from_millis(150)).await;
    assert!(c.got.close.is_none(), "{:?}", c.got.close);
    let live = store.get_call(&ringing.id).await.unwrap();
    assert_eq!(live.status, switchboard::store::CallStatus::InProgress);
    assert_eq!(live.transport.as_deref(), Some("twilio"));
    assert_eq!(live.gateway_call_id.as_deref(), Some("CA0001"));

    let mut again = Client::connect(s.addr, "/twilio/media", no_echo).await;
    again.send(twilio::start(json!({"token": token}))).await;
    let (code, reason) = again.closed().await;
    assert_eq!(code, POLICY);
    assert!(reason.contains("already used"), "{reason}");
    c.send(twilio::stop()).await;
    c.closed().await;
}

#[tokio::test]
async fn shutdown_ends_live_calls_cleanly() {
    let mut s = TestServer::start_with(|c| c.drain_timeout = Duration::from_secs(1)).await;
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "mode": "loopback"}))).await;
    c.collect_for(Duration::from_millis(100)).await;
    s.trigger_shutdown();
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1001, "ended by the server"), "going away");
    assert!(s.join(Duration::from_secs(10)).await.expect("server stops").is_ok());
    let rows = calls(&s).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].end_reason.as_deref()),
        ("completed", Some("ended by the server"))
    );
    let _ = b64(&[]);
}

#[tokio::test]
async fn twilio_stream_authorised_by_its_upgrade_signature() {
    use switchboard::transport::answer::twilio_signature;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    const TOKEN: &str = "twilio-auth-token";
    let s = TestServer::start_with(|c| {
        c.public_url = Some("https://voice.example.com".into());
        c.gateways.twilio_auth_token = Some(TOKEN.into());
    })
    .await;
    let agent = s.agent(json!({"name": "Signed"})).await;
    let number = s.number("+14155550199").await;
    s.post(
        &format!("/v1/agents/{}/numbers", agent["id"].as_str().unwrap()),
        json!({"numberId": number["id"]}),
    )
    .await;
    // Twilio calls the (signed) voice webhook: a ringing call for CallSid CA0001.
    let form = [("CallSid", "CA0001"), ("From", "+442071838750"), ("To", "+14155550199")];
    let params: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = twilio_signature(TOKEN, "https://voice.example.com/twilio/voice", &params);
    let resp = s
        .client
        .post(format!("{}/twilio/voice", s.base))
        .header("x-twilio-signature", sig)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let url = format!("ws://{}/twilio/media", s.addr);
    let signed = |sig: &str| {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-twilio-signature", sig.parse().unwrap());
        req
    };
    let good = twilio_signature(TOKEN, "wss://voice.example.com/twilio/media", &[]);

    // Valid signature, start for that callSid (CA0001): no token needed; the ringing call goes live.
    let (ws, _) = tokio_tungstenite::connect_async(signed(&good)).await.expect("signed upgrade accepted");
    let (mut tx, mut rx) = futures_util::StreamExt::split(ws);
    futures_util::SinkExt::send(&mut tx, twilio::start(json!({}))).await.unwrap();
    let first =
        tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut rx)).await.unwrap();
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "media flows: {first:?}");
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status == "in-progress").await;
    assert_eq!(rows[0].agent_id.as_deref(), agent["id"].as_str());
    assert_eq!(rows[0].transport.as_deref(), Some("twilio"));

    // The same (replayed) signature cannot open another call: no ringing call is left for it.
    let (ws2, _) = tokio_tungstenite::connect_async(signed(&good)).await.expect("upgrade accepted");
    let mut replay = Client::from_stream(ws2, no_echo);
    replay.send(twilio::start(json!({"agentId": agent["id"]}))).await;
    let (code, reason) = replay.closed().await;
    assert_eq!(code, POLICY);
    assert!(reason.contains("no ringing call"), "{reason}");

    // A wrong signature is refused before the upgrade.
    let err =
        tokio_tungstenite::connect_async(signed("bm90IHRoZSBzaWduYXR1cmU=")).await.expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }

    // No signature: the token is required as usual.
    let mut c = Client::connect(s.addr, "/twilio/media", no_echo).await;
    c.send(twilio::start(json!({"agentId": agent["id"]}))).await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, POLICY);
    assert!(reason.contains("token"), "{reason}");
    assert_eq!(calls(&s).await.len(), 1, "refused streams created no call");
    drop(tx);
}

#[tokio::test]
async fn a_socket_that_never_starts_is_closed_after_the_start_timeout() {
    let s = TestServer::start_with(|c| c.media_start_timeout = Duration::from_secs(1)).await;
    let good = good_call(&s, 100).await;
    let mut silent = Client::connect(s.addr, "/twilio/media", no_echo).await;
    silent.send(Message::text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)).await;
    let (code, reason) = silent.closed().await;
    assert_eq!(code, POLICY);
    assert_eq!(reason, "no start message within 1 s");
    let good = good.await.unwrap();
    assert!(good.got.close.is_none() && good.got.frames.len() >= 100, "the other call carried on");
    drop(good);
    let rows = calls_when(&s, |c| c.len() == 1 && c[0].status != "in-progress").await;
    assert_eq!(rows.len(), 1, "the silent socket left no call record");
}

#[tokio::test]
async fn calls_left_live_by_a_crash_are_marked_failed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let store = switchboard::store::Store::connect(&url).await.unwrap();
    let new = switchboard::store::NewCall { direction: "inbound".into(), ..Default::default() };
    let live = store.create_live_call(&new).await.unwrap();
    let done = store.create_live_call(&new).await.unwrap();
    store.end_call(&done.id, switchboard::store::CallStatus::Completed, "caller hung up").await.unwrap();
    store.close().await;

    let url2 = url.clone();
    let s = TestServer::start_with(move |c| c.database_url = url2).await;
    let store = switchboard::store::Store::connect(&url).await.unwrap();
    let live = store.get_call(&live.id).await.unwrap();
    assert_eq!(live.status, switchboard::store::CallStatus::Failed);
    assert_eq!(live.end_reason.as_deref(), Some("server stopped while the call was live"));
    assert!(live.ended_at.is_some());
    let done = store.get_call(&done.id).await.unwrap();
    assert_eq!(done.end_reason.as_deref(), Some("caller hung up"), "ended calls keep their outcome");
    drop(s);
}
