//! Synchronous DSP, no tokio: codecs (G.711 μ-law/A-law, L16, Opus) and streaming resampling.
//! Stages allocate in `new()` only; the per-frame path writes into caller-provided buffers.
//!
//! ```text
//! g711      G.711 μ-law/A-law tables and per-sample encode/decode (re-exported by codec)
//! codec     Decoder/Encoder enums over WireFormat: G.711, L16 LE/BE, Opus
//! resample  StreamResampler: any-length streaming resampling between 8/12/16/24/48 kHz
//! sinc      resample_block: whole-buffer resampling between any rates (TTS output)
//! ```

pub mod codec;
mod g711;
pub mod resample;
pub mod sinc;
#[cfg(test)]
mod testutil;
