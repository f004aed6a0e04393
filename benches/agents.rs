//! Full-pipeline capacity: N concurrent hosted-agent calls with instant scripted providers.
//!
//! Everything that runs per call in production runs here — wire decode, RNNoise, the VAD,
//! turn-taking, the conversation actor, playout, encode, the call record — except the model
//! compute: speech-to-text, the language model and text-to-speech are a scripted
//! OpenAI-compatible server in this process that answers at once (a fixed transcript, a fixed
//! two-sentence reply streamed as SSE, 24 kHz PCM of the reply's length). So the figures are
//! the runtime's own cost per call, the part that decides calls per core once the models are
//! remote.
//!
//! Starts the release `switchboard serve` as its own process (`--stt openai --tts openai
//! --llm openai` pointed at the scripted server, fresh SQLite file), creates a hosted agent,
//! and drives N calls with `switchboard::loadtest` (Twilio, the `two-turns` recorded call,
//! real-time pacing) at concurrency N. Reports the server's CPU per call-second and RSS per
//! call, the load tester's response latency and jitter, and the server's late/dropped frames.
//!
//! ```text
//! cargo bench --bench agents                  # 100 calls
//! CALLS=200 RAMP=10 cargo bench --bench agents
//! ```

use std::time::Duration;

use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::{json, Value};

#[path = "support/server.rs"]
mod support;

use support::{env_or, Server};

const KEY: &str = "sb_bench_agents_key";
/// What the scripted model says to every turn.
const REPLY: &str = "Certainly, I can help with that. Is there anything else?";

/// The scripted provider: chat completions (SSE), transcriptions (JSON), speech (SSE of PCM).
async fn scripted_providers() -> String {
    async fn chat() -> impl IntoResponse {
        let mut body = String::new();
        for piece in REPLY.split_inclusive(' ') {
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "scripted",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        let end = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "scripted",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        body.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
        ([("content-type", "text/event-stream")], body)
    }
    // The upload is read whole before answering (answering first makes the client's send fail).
    async fn transcribe(_audio: axum::body::Bytes) -> impl IntoResponse {
        axum::Json(json!({"text": "I would like to book a table for two people tomorrow evening."}))
    }
    async fn speech(axum::Json(req): axum::Json<Value>) -> impl IntoResponse {
        // 60 ms of a soft 300 Hz tone per word, 24 kHz 16-bit mono.
        let words = req["input"].as_str().unwrap_or("").split_whitespace().count().max(1);
        let n = words * 1440;
        let mut pcm = Vec::with_capacity(n * 2);
        for i in 0..n {
            let v = (2.0 * std::f64::consts::PI * 300.0 * i as f64 / 24_000.0).sin() * 6000.0;
            pcm.extend_from_slice(&(v as i16).to_le_bytes());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut body = String::new();
        for part in pcm.chunks(9600) {
            let ev = json!({"type": "speech.audio.delta", "audio": b64.encode(part)});
            body.push_str(&format!("data: {ev}\n\n"));
        }
        body.push_str(&format!("data: {}\n\n", json!({"type": "speech.audio.done"})));
        ([("content-type", "text/event-stream")], body)
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/audio/transcriptions", axum::routing::post(transcribe))
        .route("/v1/audio/speech", axum::routing::post(speech));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::main]
async fn main() {
    let calls: usize = env_or("CALLS", 100);
    let ramp: f64 = env_or("RAMP", 10.0);
    let fixture: String = env_or("FIXTURE", "two-turns".to_string());
    let providers = scripted_providers().await;
    let server = Server::start(
        KEY,
        calls + 10,
        &["--stt", "openai", "--tts", "openai", "--llm", "openai", "--openai-base-url", &providers]
            .into_iter()
            .chain(["--openai-api-key", "scripted", "--preemptive-replies", "false"])
            .collect::<Vec<_>>(),
    );
    let http = reqwest::Client::new();
    let mut agent = None;
    for _ in 0..100 {
        let resp = http
            .post(format!("http://{}/v1/agents", server.addr))
            .bearer_auth(KEY)
            .json(&json!({"name": "Bench", "voiceMode": "hosted", "beginMessage": "Hello, how can I help?",
                "systemPrompt": "You are a booking assistant.", "maxSilenceMs": 60000}))
            .send()
            .await;
        if let Ok(r) = resp {
            agent = Some(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = agent.expect("server answers");
    let root = env!("CARGO_MANIFEST_DIR");
    let fixtures = vec![format!("{root}/audio-fixtures/calls/{fixture}.json").into()];
    let mut options = switchboard::loadtest::Options::new(
        &format!("ws://{}", server.addr),
        switchboard::transport::Protocol::Twilio,
        fixtures,
    )
    .expect("options");
    options.calls = calls;
    options.concurrency = calls;
    options.ramp = Duration::from_secs_f64(ramp);
    options.agent_id = Some(agent);
    options.key = Some(KEY.into());

    let (cpu0, rss0) = server.usage();
    let load = tokio::spawn(switchboard::loadtest::run(options));
    // The window where every call is live: after the ramp, for the fixture's length.
    tokio::time::sleep(Duration::from_secs_f64(ramp + 0.5)).await;
    let (cpu_a, _) = server.usage();
    let late_a = server.metric("switchboard_playout_late_frames_total").await;
    let window = 8.0;
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let (cpu_b, rss_live) = server.usage();
    let late_b = server.metric("switchboard_playout_late_frames_total").await;
    let report = load.await.unwrap().expect("load test runs");
    let (cpu1, _) = server.usage();
    let late = server.metric("switchboard_playout_late_frames_total").await;
    let dropped = server.metric("switchboard_frames_dropped_total").await;

    let t = &report.totals;
    let m = &report.metrics;
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!("full pipeline, instant scripted providers: {calls} concurrent hosted calls ({fixture}), ramp {ramp} s");
    println!("  calls ok/failed: {}/{}  errors: {:?}", t.ok, t.failed, report.errors);
    println!("  turns played/answered/unanswered: {}/{}/{}", t.turns, t.answered, t.unanswered);
    println!(
        "  response latency ms p50/p90/p95/p99: {}/{}/{}/{}",
        f(m.response_latency_ms.p50),
        f(m.response_latency_ms.p90),
        f(m.response_latency_ms.p95),
        f(m.response_latency_ms.p99)
    );
    println!(
        "  egress jitter ms p50/p99: {:.2}/{:.2}  gaps: {}",
        m.jitter_ms.p50.unwrap_or(0.0),
        m.jitter_ms.p99.unwrap_or(0.0),
        t.gaps
    );
    println!(
        "  server CPU per call-second (all calls live, {window} s): {:.2} ms; whole run: {:.1} s CPU",
        (cpu_b - cpu_a) * 1000.0 / (window * calls as f64),
        cpu1 - cpu0
    );
    println!(
        "  server RSS: {:.0} MiB idle, {:.0} MiB with {calls} live calls ({:.0} KiB per call)",
        rss0 as f64 / 1048576.0,
        rss_live as f64 / 1048576.0,
        rss_live.saturating_sub(rss0) as f64 / 1024.0 / calls as f64
    );
    println!(
        "  late frames: {} while all live, {late} in the whole run; dropped frames: {dropped}",
        late_b - late_a
    );
    println!("  caller frames sent late by the load generator: {}", t.late_sends);
}
