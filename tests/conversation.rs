//! Agent calls over a real Twilio media websocket: the greeting is spoken, DTMF becomes a caller
//! turn, silence is reminded and hung up — all recorded on the call.

mod common;

use std::time::Duration;

use common::media::{twilio, Client, Fixture};
use common::{ended_call, TestServer};
use serde_json::json;
use switchboard::store::{CallEvent, CallStatus};
use tokio_tungstenite::tungstenite::Message;

fn twilio_echo(name: &str) -> Option<Message> {
    Some(twilio::mark(name))
}

/// μ-law silence frames (0xFF is zero) for `secs`.
fn silence(secs: f64) -> Vec<Message> {
    (0..(secs * 50.0) as usize).map(|i| twilio::media(i, &[0xFF; 160])).collect()
}

fn mulaw_decode(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0F;
    let magnitude = ((i16::from(mantissa) << 3) + 0x84) << exponent;
    if sign != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }
}

/// Indices of frames that carry sound.
fn audible_frames(frames: &[Vec<u8>]) -> Vec<usize> {
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.iter().map(|&b| mulaw_decode(b).unsigned_abs()).max().unwrap_or(0) > 500)
        .map(|(i, _)| i)
        .collect()
}

fn kinds(events: &[CallEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

async fn agent_call(s: &TestServer, agent: serde_json::Value) -> Client {
    let agent = s.agent(agent).await;
    let mut c = Client::connect(s.addr, "/twilio/media", twilio_echo).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"]}))).await;
    c
}

#[tokio::test]
async fn the_begin_message_is_spoken_sentence_by_sentence_with_marks() {
    let s = TestServer::start().await;
    let mut c = agent_call(
        &s,
        json!({"name": "Greeter", "beginMessage": "Hello! Thanks for calling Switchboard.", "maxSilenceMs": 60000}),
    )
    .await;
    c.stream(silence(4.0), Duration::from_millis(200)).await;
    c.send(twilio::stop()).await;
    c.closed().await;

    let audible = audible_frames(&c.got.frames);
    assert!(audible.len() >= 40, "about 2 s of speech came back, got {} frames", audible.len());
    assert!(c.got.frames.iter().all(|f| f.len() == 160), "whole μ-law frames");
    // One mark per sentence, each after its audio.
    let marks: Vec<&(String, usize)> = c.got.marks.iter().collect();
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert!(marks[0].1 <= marks[1].1);
    assert!(*audible.last().unwrap() < marks[1].1, "the last mark follows the speech");

    let rec = ended_call(&s).await;
    assert_eq!(rec.status, CallStatus::Completed);
    let k = kinds(&rec.events);
    assert_eq!(k.iter().filter(|k| **k == "agent_started").count(), 2, "{k:?}");
    assert_eq!(k.iter().filter(|k| **k == "agent_finished").count(), 2, "{k:?}");
    let first = rec.events.iter().find(|e| e.kind == "agent_started").unwrap();
    assert!(first.detail.as_deref().unwrap().contains("Hello!"), "{:?}", first.detail);
    assert!(rec.turns.is_empty());
}

#[tokio::test]
async fn dtmf_keys_become_a_recorded_caller_turn() {
    let s = TestServer::start().await;
    let mut c = agent_call(&s, json!({"name": "Keys", "maxSilenceMs": 60000})).await;
    let mut msgs = silence(0.4);
    msgs.push(twilio::dtmf('4'));
    msgs.extend(silence(0.2));
    msgs.push(twilio::dtmf('2'));
    msgs.push(twilio::dtmf('#'));
    msgs.extend(silence(0.5));
    c.stream(msgs, Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;

    let rec = ended_call(&s).await;
    assert_eq!(rec.turns.len(), 1, "{:?}", rec.turns);
    let t = &rec.turns[0];
    assert_eq!((t.seq, t.transcript.as_str(), t.source.as_str()), (1, "42", "dtmf"));
    assert_eq!(t.response, None, "no reply engine in this call");
    let k = kinds(&rec.events);
    assert_eq!(k.iter().filter(|k| **k == "dtmf").count(), 3, "{k:?}");
    assert!(k.contains(&"turn"));
}

#[tokio::test]
async fn a_silent_caller_is_reminded_then_hung_up_with_silence_timeout() {
    let s = TestServer::start().await;
    let mut c = agent_call(&s, json!({"name": "Patient", "maxSilenceMs": 10000})).await;
    let quiet = Fixture::load("tone-440.mulaw-8k.wav"); // only for its frame size
    assert_eq!(quiet.frames()[0].len(), 160);
    c.stream(silence(13.0), Duration::from_millis(200)).await;
    let (code, reason) = c.got.close.clone().expect("the server hung up");
    assert_eq!((code, reason.as_str()), (1000, "silence-timeout"));

    // The reminder was spoken about 2/3 of the way (6.7 s ≈ frame 333), before the hang-up.
    let audible = audible_frames(&c.got.frames);
    assert!(!audible.is_empty(), "the reminder was heard");
    assert!((300..450).contains(&audible[0]), "reminder began at frame {}", audible[0]);
    assert!(c.got.frames.len() >= 480, "hung up at about 10 s: {} frames", c.got.frames.len());

    let rec = ended_call(&s).await;
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.end_reason.as_deref(), Some("silence-timeout"));
    let k = kinds(&rec.events);
    assert!(k.contains(&"silence_reminder") && k.contains(&"hangup"), "{k:?}");
    let hangup = rec.events.iter().find(|e| e.kind == "hangup").unwrap();
    assert!((9_900..10_600).contains(&hangup.at_ms), "hung up at {} ms", hangup.at_ms);
}

/// RMS level in dBFS of μ-law frames.
fn level_dbfs(frames: &[Vec<u8>]) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for f in frames {
        for &b in f {
            sum += f64::from(mulaw_decode(b)).powi(2);
            n += 1;
        }
    }
    10.0 * (sum / n.max(1) as f64 / 32768f64.powi(2)).log10()
}

#[tokio::test]
async fn the_ambient_bed_plays_under_silence_and_none_is_exact_silence() {
    let s = TestServer::start().await;
    for (sound, expect) in [("office", Some(-32.0)), ("coffee-shop", Some(-32.0)), ("none", None)] {
        let mut c =
            agent_call(&s, json!({"name": sound, "ambientSound": sound, "maxSilenceMs": 60000})).await;
        c.stream(silence(2.0), Duration::from_millis(100)).await;
        c.send(twilio::stop()).await;
        c.closed().await;
        // Skip the bed's 200 ms fade-in. (A starved machine sends fewer frames — playout skips
        // slots it is late for — but every frame sent carries the bed.)
        let frames = &c.got.frames[10.min(c.got.frames.len())..];
        assert!(frames.len() >= 5, "{sound}: {} frames", frames.len());
        match expect {
            Some(want) => {
                let got = level_dbfs(frames);
                assert!((got - want).abs() < 3.0, "{sound}: bed at {got:.1} dBFS, want about {want}");
            }
            None => assert!(frames.iter().flatten().all(|&b| b == 0xFF), "none = exact silence"),
        }
    }
}

#[tokio::test]
async fn the_greeting_plays_at_the_agents_voice_speed() {
    // The same greeting at speeds 1 and 2 with the default voice (Piper when its weights are
    // present): the speech on the wire (first to last audible frame) lasts half as long at 2.
    let s = TestServer::start().await;
    let greeting = "Thank you for calling the Riverside restaurant, how can I help you today?";
    let mut spans = Vec::new();
    for speed in [1.0, 2.0] {
        let mut best = f64::MAX;
        // VITS is stochastic: the shortest of two renditions.
        for _ in 0..2 {
            let mut c = agent_call(
                &s,
                json!({"name": "Speed", "voiceSpeed": speed, "beginMessage": greeting, "maxSilenceMs": 60000}),
            )
            .await;
            c.stream(silence(6.0), Duration::from_millis(100)).await;
            c.send(twilio::stop()).await;
            c.closed().await;
            let loud = audible_frames(&c.got.frames);
            let (first, last) = (loud[0], *loud.last().unwrap());
            best = best.min((last - first + 1) as f64 * 0.02);
        }
        spans.push(best);
    }
    let ratio = spans[0] / spans[1];
    eprintln!("speech {:.2} s at 1×, {:.2} s at 2×: ratio {ratio:.2}", spans[0], spans[1]);
    assert!(
        (1.75..=2.25).contains(&ratio),
        "speech {:.2} s at 1×, {:.2} s at 2×: ratio {ratio:.2}",
        spans[0],
        spans[1]
    );
}
