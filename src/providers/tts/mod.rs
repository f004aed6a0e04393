//! Text-to-speech: text in, 16 kHz speech out.
//!
//! ```text
//! espeak   espeak-ng as a subprocess (every language; zero weights; keeps our binary's licence)
//! piper    Piper neural voices (VITS ONNX on onnxruntime; espeak-ng subprocess as phonemizer)
//! ```

pub mod espeak;
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
}

pub type SharedTts = Arc<dyn TtsEngine>;
