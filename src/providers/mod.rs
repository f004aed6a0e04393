//! Model providers behind traits: speech-to-text, text-to-speech (and, later, the LLM) — the
//! embedded offline engines that work out of the box, and OpenAI-compatible remote engines.
//! Coarse boundaries: calls hold `Arc<dyn …>` engines shared by every call.

pub mod tts;
