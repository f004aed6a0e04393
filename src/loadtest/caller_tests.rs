//! The caller loop against a scripted server over an in-memory websocket, on tokio's paused
//! clock: marks answered when their audio has played, at once on `clear`; faults and endings.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::loadtest::fixture::Fixture;

type Ws = WebSocketStream<DuplexStream>;

async fn pair() -> (Ws, Ws) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
    let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    (client, server)
}

/// A silent fixture of `frames` μ-law frames, no turns.
fn plan(frames: usize) -> CallPlan {
    let fixture = Fixture {
        name: "quiet".into(),
        turns: vec![],
        dtmf: vec![],
        pcm: vec![0; frames * 160],
        sample_rate_hz: 8000,
    };
    let audio = fixture.encode(WireFormat::PCMU_8K).unwrap();
    CallPlan { index: 0, fixture: Arc::new(fixture), audio: Arc::new(audio) }
}

fn options() -> Options {
    let mut o = Options::new("ws://test", Protocol::Twilio, vec![]).unwrap();
    o.tail = Duration::ZERO;
    o
}

async fn run_call(client: Ws, plan: &CallPlan) -> CallRecord {
    let mut rec = CallRecord::default();
    let wire = ClientWire::new(Protocol::Twilio, WireFormat::PCMU_8K, CallIds::new(Protocol::Twilio, "T", 0));
    converse(client, wire, &options(), plan, &mut rec).await;
    rec
}

/// The next JSON text message's `event` and body.
async fn next_event(ws: &mut Ws) -> Option<(String, Value)> {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            return Some((v["event"].as_str().unwrap_or_default().to_string(), v));
        }
    }
    None
}

async fn wait_for(ws: &mut Ws, event: &str) -> Value {
    loop {
        let (e, v) = next_event(ws).await.unwrap_or_else(|| panic!("no {event}"));
        if e == event {
            return v;
        }
    }
}

/// `n` loud μ-law frames (0x00 is near full scale).
async fn send_audio(ws: &mut Ws, n: usize) {
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 160]);
    for _ in 0..n {
        let m = format!(r#"{{"event":"media","streamSid":"s","media":{{"payload":"{payload}"}}}}"#);
        ws.send(Message::text(m)).await.unwrap();
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn marks_are_answered_once_their_audio_played_and_at_once_on_clear() {
    let (client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        wait_for(&mut server, "start").await;
        let t0 = Instant::now();
        // 200 ms of audio in one burst, then a mark: played (and answered) at 200 ms.
        send_audio(&mut server, 10).await;
        send_text(&mut server, r#"{"event":"mark","streamSid":"s","mark":{"name":"a"}}"#).await;
        let a = wait_for(&mut server, "mark").await;
        let a_at = t0.elapsed();
        // 500 ms more at 300 ms, a mark after it, and a clear at 400 ms: answered at once.
        tokio::time::sleep_until(t0 + Duration::from_millis(300)).await;
        send_audio(&mut server, 25).await;
        send_text(&mut server, r#"{"event":"mark","streamSid":"s","mark":{"name":"b"}}"#).await;
        tokio::time::sleep_until(t0 + Duration::from_millis(400)).await;
        send_text(&mut server, r#"{"event":"clear","streamSid":"s"}"#).await;
        let b = wait_for(&mut server, "mark").await;
        let b_at = t0.elapsed();
        let stop = wait_for(&mut server, "stop").await;
        let _ =
            server.close(Some(CloseFrame { code: CloseCode::Normal, reason: "caller hung up".into() })).await;
        while server.next().await.is_some() {}
        (a["mark"]["name"].clone(), a_at, b["mark"]["name"].clone(), b_at, stop)
    });
    let rec = run_call(client, &plan(50)).await;
    let (a, a_at, b, b_at, stop) = script.await.unwrap();

    assert_eq!((a.as_str(), b.as_str()), (Some("a"), Some("b")));
    assert_eq!(a_at.as_millis(), 200, "answered when its audio had played");
    assert_eq!(b_at.as_millis(), 400, "answered at the clear, not at 800 ms");
    assert_eq!(stop["stop"]["callSid"], "CAT000000");
    assert_eq!((rec.frames_received, rec.marks_received, rec.marks_answered, rec.clears), (35, 2, 2, 1));
    assert_eq!(rec.frames_sent, 50);
    // Playback: the first burst over 0–200 ms, the second from 300 ms, cut at the clear.
    let f = &rec.timeline.frames;
    assert_eq!((f[9].play_start_us, f[9].play_end_us), (180_000, 200_000));
    assert_eq!((f[10].play_start_us, f[14].play_end_us), (300_000, 400_000));
    assert!(f[15..].iter().all(|f| f.play_end_us == f.play_start_us), "unplayed audio was dropped");
    assert!(f.iter().all(|f| f.audible));
    assert_eq!(rec.close, Some((1000, "caller hung up".into())));
    assert!(rec.error.is_none() && !rec.ended_by_server && rec.faults.is_empty(), "{rec:?}");
}

#[tokio::test(start_paused = true)]
async fn an_abnormal_close_fails_the_call_and_a_normal_one_is_a_hang_up() {
    for (code, failed) in [(CloseCode::Error, true), (CloseCode::Normal, false)] {
        let (client, mut server) = pair().await;
        tokio::spawn(async move {
            wait_for(&mut server, "start").await;
            send_audio(&mut server, 3).await;
            // A frame of the wrong size is counted, not fatal.
            send_text(&mut server, r#"{"event":"media","media":{"payload":"AAAA"}}"#).await;
            send_text(&mut server, "{not json").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = server.close(Some(CloseFrame { code, reason: "done here".into() })).await;
            while server.next().await.is_some() {}
        });
        let rec = run_call(client, &plan(50)).await;
        assert_eq!(rec.faults.get(&FaultKind::FrameSize), Some(&1));
        assert_eq!(rec.faults.get(&FaultKind::BadMessage), Some(&1));
        assert!(rec.frames_sent < 10, "the caller stopped when the server closed: {}", rec.frames_sent);
        if failed {
            let (kind, detail) = rec.error.clone().unwrap();
            assert_eq!((kind, detail.as_str()), (FaultKind::Close(1011), "server closed 1011: done here"));
        } else {
            assert!(rec.error.is_none() && rec.ended_by_server, "{rec:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_vanishes_is_a_dropped_call() {
    let (client, mut server) = pair().await;
    tokio::spawn(async move {
        wait_for(&mut server, "start").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(server);
    });
    let rec = run_call(client, &plan(50)).await;
    let (kind, _) = rec.error.clone().expect("failed");
    assert_eq!(kind, FaultKind::Dropped);
    assert_eq!(rec.faults.get(&FaultKind::Dropped), Some(&1));
}
