//! `switchboard::loadtest::run` against a live Switchboard over real sockets: what the report
//! counts. Loopback calls (every caller frame comes back) on a synthetic call whose tone bursts
//! fall at known times after its annotated turns, over all five protocols; a bad key; an
//! unreachable server; and a hosted agent (embedded STT/TTS, scripted LLM) answering a recorded
//! call's two turns.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ended_call, TestServer};
use serde_json::{json, Value};
use switchboard::audio::codec::mulaw_encode;
use switchboard::config::LlmChoice;
use switchboard::loadtest::analysis::StoppedBy;
use switchboard::loadtest::report::{CallReport, Report};
use switchboard::loadtest::{plot, run, Options};
use switchboard::transport::Protocol;

/// Tone bursts of the synthetic call (ms): the loopback echo is the "answer".
const BURSTS: [(u32, u32); 2] = [(600, 1000), (2000, 2400)];
/// Its annotated caller turns: two end 300 ms before a burst (answered ~300 ms after their
/// end), the third starts while the second burst plays (a barge-in the agent meets by falling
/// silent ~200 ms later) and has nothing after it (unanswered).
const TURNS: [(u32, u32); 3] = [(0, 300), (1400, 1700), (2200, 2600)];
const DURATION_MS: u32 = 3600;
/// A key press at 3.0 s: a loopback call answers any key but 0 with `clear`.
const DTMF_AT_MS: u32 = 3000;

/// Writes the synthetic call (μ-law 8 kHz WAV + annotation) into `dir`; returns the annotation.
fn tone_call(dir: &Path) -> PathBuf {
    let samples: Vec<u8> = (0..DURATION_MS * 8)
        .map(|i| {
            let ms = i / 8;
            let on = BURSTS.iter().any(|&(s, e)| ms >= s && ms < e);
            let x = if on {
                8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()
            } else {
                0.0
            };
            mulaw_encode(x as i16)
        })
        .collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    // μ-law (7), mono, 8 kHz, 8000 B/s, block 1, 8 bits.
    for v in [7u16, 1] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    for v in [1u16, 8] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(&samples);
    std::fs::write(dir.join("tones.mulaw-8k.wav"), wav).unwrap();
    let turns: Vec<Value> =
        TURNS.iter().map(|&(s, e)| json!({"startMs": s, "endMs": e, "text": "(annotated)"})).collect();
    let annotation = json!({
        "file": "tones.mulaw-8k.wav", "durationMs": DURATION_MS, "callerTurns": turns,
        "dtmf": [{"atMs": DTMF_AT_MS, "digit": "5", "durationMs": 200}], "expect": {"turns": 3}
    });
    let path = dir.join("tones.json");
    std::fs::write(&path, annotation.to_string()).unwrap();
    path
}

/// Loopback options against `s`: the server's key, `mode=loopback`, a short tail.
fn loopback(s: &TestServer, protocol: Protocol, fixture: &Path) -> Options {
    let mut o = Options::new(&format!("ws://{}", s.addr), protocol, vec![fixture.to_path_buf()]).unwrap();
    o.key = Some(s.key.clone());
    o.params = vec![("mode".into(), "loopback".into())];
    o.tail = Duration::from_millis(600);
    o
}

/// What every loopback call of the synthetic fixture must show.
#[track_caller]
fn check_tone_call(c: &CallReport, label: &str) {
    assert!(c.ok, "{label}: {:?}", c.error);
    assert_eq!(c.faults.len(), 0, "{label}: {:?}", c.faults);
    assert_eq!((c.ended_by.as_str(), c.close.as_ref().map(|c| c.code)), ("caller", Some(1000)), "{label}");
    assert_eq!(c.turns.len(), 3, "{label}: {:?}", c.turns);
    assert!(c.turns.iter().all(|t| t.played), "{label}");
    // The echo of each burst starts ~300 ms (plus the server's delay) after the turn before it.
    for t in &c.turns[..2] {
        let l = t.latency_ms.unwrap_or_else(|| panic!("{label}: turn {} unanswered", t.index));
        assert!((260.0..500.0).contains(&l), "{label}: turn {} latency {l} ms", t.index);
    }
    assert_eq!(c.turns[2].latency_ms, None, "{label}: nothing follows the last turn");
    assert_eq!(c.answered, 2, "{label}");
    // The third turn starts 200 ms into the second burst's echo, which ends on its own.
    assert_eq!(c.barge_ins.len(), 1, "{label}: {:?}", c.barge_ins);
    let b = &c.barge_ins[0];
    assert_eq!((b.turn, b.by), (2, Some(StoppedBy::Silence)), "{label}");
    let r = b.reaction_ms.unwrap();
    assert!((160.0..450.0).contains(&r), "{label}: barge-in reaction {r} ms");
    assert_eq!(c.greeting_ms, None, "{label}: no agent audio before the first turn ended");
    // The key press was sent and answered with a clear; marks were answered as they played.
    assert_eq!(c.dtmf_sent, 1, "{label}");
    assert!(c.clears >= 1, "{label}: {} clears", c.clears);
    // Loopback marks each 1 s utterance; the clear at 3.0 s cuts the third.
    assert!(
        c.marks_received >= 2 && c.marks_answered + 1 >= c.marks_received,
        "{label}: {}/{}",
        c.marks_answered,
        c.marks_received
    );
    // 3.6 s + 0.6 s of tail at 20 ms; every frame came back (in the same codec).
    assert_eq!(c.frames_sent, 210, "{label}");
    assert!(c.frames_received >= 190, "{label}: {} frames back", c.frames_received);
}

#[tokio::test]
async fn twilio_loopback_calls_count_every_turn_answer_barge_in_and_key_press() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = loopback(&s, Protocol::Twilio, &tone_call(dir.path()));
    (o.calls, o.concurrency, o.ramp) = (4, 2, Duration::from_millis(400));
    let report = run(o).await.unwrap();
    println!("{}", report.table());

    for c in &report.calls {
        check_tone_call(c, &format!("call {}", c.index));
    }
    let t = &report.totals;
    assert_eq!((t.calls, t.ok, t.failed), (4, 4, 0));
    assert_eq!((t.turns, t.answered, t.unanswered), (12, 8, 4));
    assert_eq!((t.barge_ins, t.barge_ins_stopped, t.dtmf_sent), (4, 4, 4));
    assert_eq!(t.frames_sent, 4 * 210);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let m = &report.metrics;
    assert_eq!((m.response_latency_ms.count, m.barge_in_reaction_ms.count), (8, 4));
    assert!(m.jitter_ms.count >= t.frames_received - 4 - t.pauses, "one jitter sample per frame pair");
    assert!(m.jitter_ms.p50.unwrap() < 20.0, "{:?}", m.jitter_ms);

    // Never more than two calls live: the ramp spreads the first two, the others wait for a slot.
    let c = &report.calls;
    assert!(c[0].start_s < 0.1 && (0.15..0.5).contains(&c[1].start_s), "{} {}", c[0].start_s, c[1].start_s);
    let first_end = (c[0].start_s + c[0].duration_s).min(c[1].start_s + c[1].duration_s);
    assert!(
        c[2].start_s >= first_end - 0.05,
        "call 2 at {} before a slot freed at {first_end}",
        c[2].start_s
    );
    // Turns are placed in the run's time, after their call started.
    for c in c {
        assert!(c.turns.iter().all(|t| t.at_s > c.start_s && t.at_s < c.start_s + c.duration_s));
    }

    // The JSON report has the documented shape, and the plot one point per played turn.
    let v = serde_json::to_value(&report).unwrap();
    for key in ["schema", "startedAt", "durationS", "options", "totals", "metrics", "errors", "calls"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["options"]["keyGiven"], true);
    assert!(!v.to_string().contains(&s.key), "the key is never in the report");
    for metric in ["responseLatencyMs", "bargeInReactionMs", "jitterMs", "greetingMs", "connectMs"] {
        for field in ["count", "mean", "p50", "p90", "p95", "p99", "max"] {
            assert!(v["metrics"][metric].get(field).is_some(), "{metric}.{field}");
        }
    }
    let call = &v["calls"][0];
    for key in ["fixture", "ok", "error", "turns", "bargeIns", "jitterP99Ms", "gaps", "faults", "dtmfSent"] {
        assert!(call.get(key).is_some(), "{key}");
    }
    assert_eq!(call["turns"][0]["callerEndMs"], 300);
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back.totals.answered, 8);
    let svg = plot::svg(&report);
    assert_eq!(svg.matches(r#"class="answered""#).count(), 8);
    assert_eq!(svg.matches(r#"class="unanswered""#).count(), 4);
}

#[tokio::test]
async fn telnyx_vonage_plivo_and_native_loopback_calls_measure_the_same() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = tone_call(dir.path());
    let runs = [Protocol::Telnyx, Protocol::Vonage, Protocol::Plivo, Protocol::Native]
        .map(|p| run(loopback(&s, p, &fixture)));
    let reports = futures_util::future::join_all(runs).await;
    for report in reports {
        let report = report.unwrap();
        let label = report.options.protocol.clone();
        println!("{label}:\n{}", report.table());
        check_tone_call(&report.calls[0], &label);
        assert_eq!(
            report.options.url,
            format!(
                "ws://{}{}",
                s.addr,
                match label.as_str() {
                    "telnyx" => "/telnyx/media",
                    "vonage" => "/vonage/media",
                    "plivo" => "/plivo/media",
                    _ => "/v1/media",
                }
            )
        );
    }
}

#[tokio::test]
async fn a_bad_key_fails_every_call_with_the_servers_close_reason() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = loopback(&s, Protocol::Twilio, &tone_call(dir.path()));
    (o.calls, o.concurrency, o.key) = (3, 3, Some("sb_not_a_key".into()));
    let report = run(o).await.unwrap();
    println!("{}", report.table());
    assert_eq!((report.totals.ok, report.totals.failed, report.totals.turns), (0, 3, 0));
    assert_eq!(report.errors, [("close_1008".to_string(), 3)].into());
    for c in &report.calls {
        assert_eq!(c.error_kind.as_deref(), Some("close_1008"));
        assert!(c.error.as_deref().unwrap().contains("invalid or revoked API key"), "{:?}", c.error);
        assert_eq!(c.ended_by, "error");
        assert!(c.turns.iter().all(|t| !t.played), "{:?}", c.turns);
    }
    assert!(report.table().contains("close_1008 3"));

    // Nobody listening: every call fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut o =
        Options::new(&format!("ws://127.0.0.1:{port}"), Protocol::Native, vec![dir.path().into()]).unwrap();
    o.calls = 2;
    let report = run(o).await.unwrap();
    assert_eq!(report.errors, [("connect".to_string(), 2)].into());
    assert_eq!(report.totals.failed, 2);
}

/// A scripted OpenAI-compatible chat server answering `reply` to every request; its base URL.
async fn scripted_model(reply: &'static str) -> String {
    async fn chat(
        axum::extract::State(reply): axum::extract::State<&'static str>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let chunk = |delta: Value, finish: Option<&str>| {
            let v = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "scripted",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {v}\n\n")
        };
        let body = [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": reply}), None),
            chunk(json!({}), Some("stop")),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        ([("content-type", "text/event-stream")], body).into_response()
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat)).with_state(reply);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_hosted_agent_answers_both_turns_of_a_recorded_call() {
    let base = scripted_model("Sure, no problem.").await;
    let s = TestServer::start_with(move |c| {
        c.providers.preemptive_replies = false;
        c.providers.llm = LlmChoice::Openai;
        c.providers.openai_base_url = base;
        c.providers.openai_api_key = Some("test-key".into());
    })
    .await;
    // Sensitivity 0 and no backchannels: the agent speaks only its greeting and one reply per turn.
    let agent = s
        .agent(json!({"name": "Riverside", "voiceMode": "hosted", "systemPrompt": "You take bookings.",
                      "beginMessage": "Riverside, hello.", "interruptionSensitivity": 0.0,
                      "enableBackchannel": false, "maxSilenceMs": 60000}))
        .await;
    let calls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/calls/two-turns.json");
    let mut o = Options::new(&format!("ws://{}", s.addr), Protocol::Twilio, vec![calls]).unwrap();
    o.key = Some(s.key.clone());
    o.agent_id = Some(agent["id"].as_str().unwrap().to_string());
    let report = run(o).await.unwrap();
    println!("{}", report.table());

    let c = &report.calls[0];
    assert!(c.ok, "{:?}", c.error);
    assert_eq!(c.faults.len(), 0, "{:?}", c.faults);
    // The greeting, then exactly one answer after each of the two turns (2.5 s of silence apart).
    assert!(c.greeting_ms.is_some(), "the greeting plays before the first turn ends");
    assert_eq!(c.turns.len(), 2, "{:?}", c.turns);
    assert_eq!(c.answered, 2, "{:?}", c.turns);
    for t in &c.turns {
        let l = t.latency_ms.unwrap();
        assert!(l > 100.0 && l < 4000.0, "turn {} answered after {l} ms", t.index);
    }
    assert_eq!((report.totals.turns, report.totals.answered, report.totals.unanswered), (2, 2, 0));
    // One mark per spoken sentence (greeting, two replies), each answered once played.
    assert!(
        c.marks_received >= 3 && c.marks_answered == c.marks_received,
        "{}/{}",
        c.marks_answered,
        c.marks_received
    );
    assert_eq!(c.clears, 0, "never interrupted at sensitivity 0");
    assert!(c.frames_received > 500, "the server streamed audio all along: {}", c.frames_received);

    // The server saw the same call: two caller turns, each answered.
    let rec = ended_call(&s).await;
    assert_eq!(rec.turns.len(), 2, "{:?}", rec.turns);
    assert!(rec.turns.iter().all(|t| t.response.as_deref() == Some("Sure, no problem.")), "{:?}", rec.turns);
}
