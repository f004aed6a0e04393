//! Synchronous DSP, no tokio: codecs (G.711 μ-law/A-law, L16, Opus), streaming resampling and
//! voice activity detection.
//! Stages allocate in `new()` only; the per-frame path writes into caller-provided buffers.
//!
//! ```text
//! g711      G.711 μ-law/A-law tables and per-sample encode/decode (re-exported by codec)
//! codec     Decoder/Encoder enums over WireFormat: G.711, L16 LE/BE, Opus
//! resample  StreamResampler: any-length streaming resampling between 8/12/16/24/48 kHz
//! vad       Vad: Silero (onnxruntime) or webrtc-vad per 20 ms frame + speech segmenter
//! ```

pub mod codec;
mod g711;
pub mod resample;
#[cfg(test)]
mod testutil;
pub mod vad;
