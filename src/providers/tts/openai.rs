//! Remote text-to-speech over any OpenAI-compatible `POST {base}/audio/speech` through
//! `async-openai`, streamed: `stream_format: "sse"` with `response_format: "pcm"` makes the
//! server send `speech.audio.delta` events, each a base64 chunk of 24 kHz 16-bit mono PCM, then
//! `speech.audio.done`. Chunks are resampled to the pipeline's 16 kHz as they arrive (one
//! streaming resampler per request, so no sample is lost or doubled at chunk edges) and yielded
//! at once; the agent's `voiceSpeed` goes to the server as `speed`.
//!
//! Voices are the service's built-in names (`alloy`, `ash`, …); the catalogue lists them with
//! provider `openai` when `--tts openai` is configured.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::Client;
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{TtsEngine, TtsError, TtsRequest, TtsStream};
use crate::audio::resample::StreamResampler;
use crate::call::PIPELINE_RATE_HZ;

/// Name reported by [`TtsEngine::name`] and in metrics.
pub const ENGINE: &str = "openai-tts";

/// Rate of the service's `pcm` format.
pub const PCM_RATE_HZ: u32 = 24_000;

/// Time allowed to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest silence between two events before the synthesis is abandoned.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(15);

/// Prefix of the engine voice names routed to this engine (`openai:alloy`).
pub const VOICE_PREFIX: &str = "openai:";

/// The service's built-in voices.
pub const VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin",
    "cedar",
];

/// OpenAI-compatible streaming speech client.
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    client: Client<OpenAIConfig>,
    /// Model name sent with each request (`gpt-4o-mini-tts`, …).
    model: String,
}

/// One server-sent event, leanly: only the audio matters.
#[derive(Debug, Deserialize)]
struct SpeechEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    audio: Option<String>,
}

fn err(detail: impl Into<String>) -> TtsError {
    TtsError::Engine { engine: ENGINE, detail: detail.into() }
}

impl OpenAiTts {
    /// `base_url` includes the API version path, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>, model: impl Into<String>) -> Self {
        let config = OpenAIConfig::new().with_api_base(base_url).with_api_key(api_key);
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().unwrap_or_default();
        Self { client: Client::build(http, config), model: model.into() }
    }

    /// The engine voice name for one of [`VOICES`].
    pub fn engine_voice(voice: &str) -> String {
        format!("{VOICE_PREFIX}{voice}")
    }
}

impl TtsEngine for OpenAiTts {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn synthesize(
        &self,
        req: TtsRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<i16>, TtsError>> + Send + '_>> {
        Box::pin(super::collect(self.stream(req)))
    }

    fn stream(&self, req: TtsRequest) -> TtsStream<'_> {
        let Some(voice) = req.engine_voice.strip_prefix(VOICE_PREFIX).map(str::to_string) else {
            let unknown = TtsError::UnknownVoice { engine: ENGINE, voice: req.engine_voice };
            return Box::pin(futures_util::stream::iter([Err(unknown)]));
        };
        let speed = if req.speed.is_finite() { req.speed.clamp(0.25, 4.0) } else { 1.0 };
        let body = json!({
            "model": self.model, "input": req.text, "voice": voice, "speed": speed,
            "response_format": "pcm", "stream_format": "sse",
        });
        let client = self.client.clone();
        let events = futures_util::stream::once(async move {
            client.audio().speech().create_stream_byot::<_, SpeechEvent>(body).await
        });
        Box::pin(events.flat_map(|opened| -> TtsStream<'static> {
            let events = match opened {
                Ok(events) => events,
                Err(e) => return Box::pin(futures_util::stream::iter([Err(err(e.to_string()))])),
            };
            let resampler = match StreamResampler::new(PCM_RATE_HZ, PIPELINE_RATE_HZ) {
                Ok(r) => r,
                Err(e) => return Box::pin(futures_util::stream::iter([Err(err(e.to_string()))])),
            };
            let state = Decoder { events, resampler, odd: None, done: false };
            Box::pin(futures_util::stream::unfold(state, |mut st| async move {
                let item = st.next_chunk().await?;
                if item.is_err() {
                    st.done = true;
                }
                Some((item, st))
            }))
        }))
    }
}

/// The event stream of one request, turned into pipeline PCM.
struct Decoder<S> {
    events: S,
    resampler: StreamResampler,
    /// A byte left over from an odd-length chunk (a sample split across two events).
    odd: Option<u8>,
    done: bool,
}

impl<S, E> Decoder<S>
where
    S: futures_util::Stream<Item = Result<SpeechEvent, E>> + Unpin,
    E: std::fmt::Display,
{
    /// The next non-empty chunk of 16 kHz audio; `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Vec<i16>, TtsError>> {
        while !self.done {
            let event = match tokio::time::timeout(CHUNK_TIMEOUT, self.events.next()).await {
                Err(_) => return Some(Err(err("stream stalled"))),
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Ok(Some(Err(e))) => return Some(Err(err(e.to_string()))),
                Ok(Some(Ok(event))) => event,
            };
            if event.kind == "speech.audio.done" {
                self.done = true;
                break;
            }
            let Some(b64) = event.audio else { continue };
            let bytes = match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                Ok(b) => b,
                Err(e) => return Some(Err(err(format!("audio chunk is not base64: {e}")))),
            };
            let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
            let mut rest: &[u8] = &bytes;
            if let (Some(lo), Some(&hi)) = (self.odd.take(), rest.first()) {
                samples.push(i16::from_le_bytes([lo, hi]));
                rest = &rest[1..];
            }
            let pairs = rest.chunks_exact(2);
            self.odd = pairs.remainder().first().copied();
            samples.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
            let mut out = Vec::with_capacity(self.resampler.output_len_hint(samples.len()));
            self.resampler.process(&samples, &mut out);
            if !out.is_empty() {
                return Some(Ok(out));
            }
        }
        // The end: push 20 ms of silence through to flush the partial block and the filter's
        // half-block delay (once).
        if self.resampler.pending_samples() == 0 && self.odd.is_none() {
            return None;
        }
        self.odd = None;
        let mut out = Vec::new();
        self.resampler.process(&[0; PCM_RATE_HZ as usize / 50], &mut out);
        self.resampler.reset();
        (!out.is_empty()).then_some(Ok(out))
    }
}
