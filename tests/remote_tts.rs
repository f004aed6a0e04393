//! The remote text-to-speech engine against a scripted OpenAI-compatible `/audio/speech` server
//! streaming 24 kHz PCM over server-sent events: the request it gets (model, voice, speed,
//! formats), the audio streamed back in chunks at 16 kHz with its pitch kept, the catalogue with
//! `--tts openai`, and an agent with a remote voice greeting a caller over a real websocket.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::media::{twilio, Client};
use common::TestServer;
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::config::TtsChoice;
use switchboard::providers::tts::openai::OpenAiTts;
use switchboard::providers::tts::{TtsEngine, TtsRequest};

/// 0.75 s of a 220 Hz tone at 24 kHz, as little-endian bytes.
fn tone_bytes() -> Vec<u8> {
    (0..18_000)
        .map(|i| ((i as f64 * 220.0 * std::f64::consts::TAU / 24_000.0).sin() * 12_000.0) as i16)
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// A scripted speech server: answers every request with the tone in three deltas (split at odd
/// byte offsets, as a server may), then `speech.audio.done`; returns its base URL and requests.
async fn speech_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/audio/speech",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = s2.clone();
            async move {
                seen.lock().unwrap().push(body);
                let bytes = tone_bytes();
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut events: Vec<String> = [(0, 12_001), (12_001, 24_001), (24_001, bytes.len())]
                    .iter()
                    .map(|&(a, b)| {
                        let ev = json!({"type": "speech.audio.delta", "audio": b64.encode(&bytes[a..b])});
                        format!("data: {ev}\n\n")
                    })
                    .collect();
                let done = json!({"type": "speech.audio.done", "usage": {"input_tokens": 3, "output_tokens": 9, "total_tokens": 12}});
                events.push(format!("data: {done}\n\n"));
                let stream = futures_util::stream::iter(events).then(|e| async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok::<_, std::io::Error>(e)
                });
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// Frequency from zero crossings.
fn pitch_hz(pcm: &[i16], rate: f64) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (pcm.len() as f64 / rate)
}

#[tokio::test]
async fn the_remote_engine_streams_the_servers_pcm_at_16_khz() {
    let (base, seen) = speech_server().await;
    let tts = OpenAiTts::new(base, "test-key", "gpt-4o-mini-tts");
    let req = TtsRequest {
        text: "Hello there.".into(),
        engine_voice: OpenAiTts::engine_voice("alloy"),
        speed: 1.5,
    };
    let mut stream = tts.stream(req);
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await {
        chunks.push(c.expect("chunk"));
    }
    assert!(chunks.len() >= 3, "streamed as the deltas came: {} chunks", chunks.len());
    let pcm: Vec<i16> = chunks.concat();
    // 0.75 s at 16 kHz, plus at most the 20 ms flush.
    assert!((12_000..=12_320).contains(&pcm.len()), "{} samples", pcm.len());
    let hz = pitch_hz(&pcm[400..11_600], 16_000.0);
    assert!((hz - 220.0).abs() < 220.0 * 0.02, "pitch {hz:.1} Hz");

    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "gpt-4o-mini-tts");
    assert_eq!(body["voice"], "alloy");
    assert_eq!(body["input"], "Hello there.");
    assert_eq!(body["speed"], 1.5);
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["stream_format"], "sse");

    // A voice of another engine is refused, not sent.
    let other = TtsRequest { text: "x".into(), engine_voice: "en-us".into(), speed: 1.0 };
    assert!(tts.synthesize(other).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_agent_with_a_remote_voice_greets_the_caller_with_it() {
    let (base, seen) = speech_server().await;
    let s = TestServer::start_with(move |c| {
        c.providers.tts = TtsChoice::Openai;
        c.providers.openai_base_url = base;
        c.providers.openai_api_key = Some("test-key".into());
    })
    .await;
    let (status, voices) = s.get("/v1/agents/voices").await;
    assert_eq!(status, 200);
    let list = voices["data"].as_array().unwrap().clone();
    assert_eq!(list[0]["voice_id"], "alloy", "remote voices first: {}", list[0]);
    assert_eq!(list[0]["provider"], "openai");
    assert!(list.iter().any(|v| v["provider"] == "espeak-ng"), "the embedded voices stay");

    let agent = s
        .agent(json!({"name": "Remote", "voiceMode": "webhook", "voice": "coral", "voiceSpeed": 1.25,
                      "beginMessage": "Hello there.", "maxSilenceMs": 60000}))
        .await;
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent["id"]}))).await;
    let silence: Vec<_> = (0..100).map(|i| twilio::media(i, &[0xFF; 160])).collect();
    c.stream(silence, Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;

    let body = seen.lock().unwrap().first().cloned().expect("the speech server was asked");
    assert_eq!((body["voice"].as_str(), body["input"].as_str()), (Some("coral"), Some("Hello there.")));
    assert_eq!(body["speed"], 1.25, "voiceSpeed goes to the service");
    // The tone came back on the wire (μ-law, not silence).
    let loud = c.got.frames.iter().filter(|f| f.iter().any(|&b| b != 0xFF && b != 0x7F)).count();
    assert!(loud >= 30, "{loud} audible frames of {}", c.got.frames.len());
}
