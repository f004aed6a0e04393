//! Synchronous DSP, no tokio: codecs (G.711 μ-law/A-law, L16, Opus), streaming resampling,
//! the listener's denoiser and voice activity detection, and the agent's ambient bed.
//! Stages allocate in `new()` only; the per-frame path writes into caller-provided buffers.
//!
//! ```text
//! g711      G.711 μ-law/A-law tables and per-sample encode/decode (re-exported by codec)
//! codec     Decoder/Encoder enums over WireFormat: G.711, L16 LE/BE, Opus
//! resample  StreamResampler: any-length streaming resampling between 8/12/16/24/48 kHz
//! sinc      resample_block: whole-buffer resampling between any rates (TTS output)
//! denoise   Denoiser: RNNoise at 48 kHz + background-speech gate, 20 ms 16 kHz frames
//! rnnoise   Rnnoise: our RNNoise (nnnoiseless's model, AVX2/FMA kernels), 10 ms 48 kHz frames
//! vad       Vad: Silero (native or onnxruntime) or webrtc-vad per 20 ms frame + speech segmenter
//! simd      Kernel: which hand-written vector kernels the native engines run
//! stretch   TimeStretch: streaming WSOLA time-stretch for voiceSpeed 0.5–2.0, pitch kept
//! ambient   AmbientBed (embedded looping beds) + AmbientMixer: ambientSound under outbound audio
//! ```

pub mod ambient;
pub mod codec;
pub mod denoise;
mod g711;
pub mod resample;
pub mod rnnoise;
mod simd;
pub mod sinc;
pub mod stretch;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tone;
pub mod vad;
