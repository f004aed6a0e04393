//! Voice-to-voice latency of a hosted agent with the embedded engines, single call at a time:
//! end of the caller's speech → the agent's first audio frame on the wire, per caller turn of
//! the recorded calls in audio-fixtures/calls, with the per-stage breakdown.
//!
//! ```sh
//! cargo bench --bench voice                 # every fixture twice
//! REPEAT=5 cargo bench --bench voice
//! FIXTURES=two-turns,goodbye cargo bench --bench voice
//! ```
//! Each call streams its fixture in real time over `/twilio/media` (μ-law 8 kHz, absolute 20 ms
//! pacing) to a fresh in-process server with the default engines: RNNoise, Silero VAD (gated),
//! Whisper tiny.en, SmolLM2-135M on llama.cpp, Piper. Stages come from the call's event record
//! (media time since the call started):
//!
//! - `endpointing`: annotated end of speech → turn decided (VAD hangover + end-of-turn silence);
//! - `stt`: annotated end of speech → final transcript available (runs during endpointing);
//! - `llm_ttft`: turn decided → first reply text (0 when a preemptive reply, asked on the
//!   tentative transcript, had text before the turn was decided);
//! - `to_audio`: the later of those two → first audio frame sent (first sentence complete + TTS
//!   + playout);
//! - `total`: annotated end of speech → first audio frame sent (server clock);
//! - `wire`: the same seen by the caller (first audible frame after the end of speech, counted
//!   in received 20 ms frames).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::media::{twilio, Client, Fixture};
use common::TestServer;
use serde_json::{json, Value};
use switchboard::store::CallEvent;

fn annotation(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures/calls")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mulaw_level(b: u8) -> i32 {
    let b = !b;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0F);
    ((mantissa << 3) + 0x84) << exponent
}

fn detail(e: &CallEvent) -> Value {
    e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null)
}

#[derive(Default)]
struct Stages {
    endpointing: Vec<f64>,
    stt: Vec<f64>,
    llm_ttft: Vec<f64>,
    to_audio: Vec<f64>,
    total: Vec<f64>,
    wire: Vec<f64>,
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * p).round() as usize]
}

async fn one_call(s: &TestServer, agent_id: &Value, name: &str, st: &mut Stages) {
    let ann = annotation(name);
    let fx = Fixture::load(&format!("calls/{name}.mulaw-8k.wav"));
    let mut frames = fx.frames();
    frames.extend(std::iter::repeat_n(vec![0xFF; 160], 250)); // 5 s for the last reply
    let msgs = frames.iter().enumerate().map(|(i, f)| twilio::media(i, f)).collect();
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent_id}))).await;
    c.stream(msgs, Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), c.closed()).await;
    let events = common::ended_call(s).await.events;
    if std::env::var_os("VERBOSE").is_some() {
        for e in &events {
            eprintln!("    {:>6} {:<22} {}", e.at_ms, e.kind, e.detail.as_deref().unwrap_or_default());
        }
    }

    let ends: Vec<f64> =
        ann["callerTurns"].as_array().unwrap().iter().map(|t| t["endMs"].as_f64().unwrap()).collect();
    let turns: Vec<&CallEvent> = events.iter().filter(|e| e.kind == "turn").collect();
    for (i, turn) in turns.iter().enumerate() {
        let seq = detail(turn)["seq"].as_i64().unwrap();
        // The annotated turn whose end is closest before the decision.
        let decided = turn.at_ms as f64;
        // End of the speech this turn closes: the annotated end of a caller turn, or the VAD's
        // end when the caller paused inside an annotated turn (the turn was taken there).
        let annotated = ends.iter().rfind(|&&e| e <= decided).copied();
        let vad = events
            .iter()
            .rfind(|e| e.kind == "speech_ended" && e.at_ms as f64 <= decided)
            .map(|e| e.at_ms as f64);
        let Some(end) = annotated.into_iter().chain(vad).reduce(f64::max) else { continue };
        let transcript = events
            .iter()
            .rfind(|e| e.kind == "transcript" && (e.at_ms as f64) <= decided + 1.0)
            .and_then(|e| detail(e)["arrivedMs"].as_f64());
        let text = events.iter().find(|e| e.kind == "reply_text" && detail(e)["seq"].as_i64() == Some(seq));
        let audio = events.iter().find(|e| e.kind == "reply_audio" && detail(e)["seq"].as_i64() == Some(seq));
        let (Some(text), Some(audio)) = (text, audio) else {
            // Intent-handled turns (goodbye, transfer) have no model text: total only.
            if let Some(a) = events.iter().find(|e| e.kind == "agent_started" && (e.at_ms as f64) > decided) {
                eprintln!(
                    "  {name} turn {}: no model reply; first audio {:.0} ms after speech end",
                    i + 1,
                    a.at_ms as f64 - end
                );
            }
            continue;
        };
        st.endpointing.push(decided - end);
        if let Some(t) = transcript {
            st.stt.push(t - end);
        }
        // A preemptive reply's first text may come before the turn is decided.
        let text_at = (text.at_ms as f64).max(decided);
        st.llm_ttft.push(text_at - decided);
        st.to_audio.push(audio.at_ms as f64 - text_at);
        st.total.push(audio.at_ms as f64 - end);
        // The caller's view: first audible frame at or after the end of speech.
        let first = (end / 20.0).ceil() as usize;
        if let Some(k) = (first..c.got.frames.len())
            .find(|&k| c.got.frames[k].iter().map(|&b| mulaw_level(b)).max().unwrap_or(0) > 500)
        {
            st.wire.push(k as f64 * 20.0 - end);
        }
        eprintln!(
            "  {name} turn {}: endpointing {:.0}  llm_ttft {:.0}  to_audio {:.0}  total {:.0} ms",
            i + 1,
            decided - end,
            text_at - decided,
            audio.at_ms as f64 - text_at,
            audio.at_ms as f64 - end
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let repeat: usize = std::env::var("REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let fixtures: Vec<String> = std::env::var("FIXTURES")
        .unwrap_or_else(|_| "two-turns,goodbye,transfer,barge-in".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = TestServer::start().await;
        let agent = s
            .agent(json!({
                "name": "Riverside", "voiceMode": "hosted", "maxSilenceMs": 60000,
                "systemPrompt": "You are the phone assistant of the Riverside restaurant. You take table bookings and answer questions about opening hours (noon to eleven every day).",
                "beginMessage": "Riverside restaurant, how can I help?",
            }))
            .await;
        let mut st = Stages::default();
        for round in 0..repeat {
            for name in &fixtures {
                eprintln!("round {} {name}", round + 1);
                one_call(&s, &agent["id"], name, &mut st).await;
            }
        }
        println!("voice-to-voice, single call, embedded engines ({} model-answered turns)", st.total.len());
        println!("{:<12} {:>8} {:>8} {:>8} {:>8}", "stage (ms)", "p50", "p95", "min", "max");
        for (label, v) in [
            ("endpointing", &st.endpointing),
            ("stt", &st.stt),
            ("llm_ttft", &st.llm_ttft),
            ("to_audio", &st.to_audio),
            ("total", &st.total),
            ("wire", &st.wire),
        ] {
            println!(
                "{label:<12} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                pct(v, 0.5),
                pct(v, 0.95),
                pct(v, 0.0),
                pct(v, 1.0)
            );
        }
    });
}
