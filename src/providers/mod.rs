//! Model engines behind the listening, thinking and speaking stages.
//!
//! ```text
//! onnx   process-wide onnxruntime (loaded from models/lib at run time) and session building
//! ```
//! Engines that run ONNX models (Silero VAD now; Piper TTS and Smart-Turn later) share the one
//! runtime set up by [`onnx::runtime`].

pub mod onnx;
