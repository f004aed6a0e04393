//! Text-to-speech: text in, 16 kHz speech out.
//!
//! ```text
//! espeak   espeak-ng as a subprocess (every language; zero weights; keeps our binary's licence)
//! piper    Piper neural voices (VITS ONNX on onnxruntime; espeak-ng subprocess as phonemizer)
//! openai   any OpenAI-compatible `/audio/speech` (streamed PCM over server-sent events)
//! ```
//!
//! Engines stream: [`TtsEngine::stream`] yields the speech in chunks as they are ready (Piper:
//! one per sentence; the remote engine: as the server sends them), so the first audio of a
//! multi-sentence text does not wait for the whole. Dropping the stream cancels the synthesis.

pub mod espeak;
pub mod openai;
pub mod piper;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Text-to-speech faults.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("voice '{voice}' is not spoken by {engine}")]
    UnknownVoice { engine: &'static str, voice: String },
    #[error("{engine} failed: {detail}")]
    Engine { engine: &'static str, detail: String },
}

/// Speech in chunks of mono 16 kHz PCM, in order; ends after the last chunk or the first error.
pub type TtsStream<'a> = Pin<Box<dyn futures_util::Stream<Item = Result<Vec<i16>, TtsError>> + Send + 'a>>;

/// The whole speech of a stream (for engines whose `synthesize` is their stream, collected).
pub async fn collect(mut stream: TtsStream<'_>) -> Result<Vec<i16>, TtsError> {
    use futures_util::StreamExt;
    let mut pcm = Vec::new();
    while let Some(chunk) = stream.next().await {
        pcm.extend(chunk?);
    }
    Ok(pcm)
}

/// One synthesis request.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsRequest {
    pub text: String,
    /// The engine's own voice name (`Voice::engine_voice`).
    pub engine_voice: String,
    /// 0.5 … 2.0; 1 = the voice's natural rate.
    pub speed: f64,
}

/// A text-to-speech engine shared by every call.
pub trait TtsEngine: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Synthesizes `req.text`: mono 16 kHz PCM.
    fn synthesize(
        &self,
        req: TtsRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<i16>, TtsError>> + Send + '_>>;

    /// Synthesizes `req.text` as a stream of chunks; by default the whole speech in one.
    fn stream(&self, req: TtsRequest) -> TtsStream<'_> {
        Box::pin(futures_util::stream::once(self.synthesize(req)))
    }
}

pub type SharedTts = Arc<dyn TtsEngine>;
