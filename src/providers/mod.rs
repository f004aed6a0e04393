//! Model providers behind coarse `Arc<dyn Trait>` boundaries: the call pipeline talks to a
//! speech-to-text engine without knowing whether it runs in-process or over HTTP.
//!
//! ```text
//! stt/   SttEngine trait, requests/results, WER; embedded Whisper tiny.en (candle) and a
//!        remote OpenAI-compatible /audio/transcriptions engine
//! ```

pub mod stt;
