//! Large language models: the streaming [`LlmEngine`] interface the conversation talks through,
//! its request/event types, the model tiers and the engines.
//!
//! ```text
//! mod.rs      LlmEngine, ChatRequest/ChatMessage/ChatEvent, tools, ModelTiers, LlmError
//! llama       embedded SmolLM2-135M-Instruct (GGUF) on llama.cpp: context pool, prefix reuse
//! openai      OpenAI-compatible streaming chat completions (tools) over async-openai
//! ```
//!
//! A reply is a stream: [`LlmEngine::chat`] returns at once with a bounded receiver of
//! [`ChatEvent`]s — text deltas, whole tool calls, then one `Done`. Dropping the receiver
//! cancels the generation. Engines are shared as [`SharedLlm`] (`Arc<dyn LlmEngine>`).

pub mod llama;
pub mod openai;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::agent::ModelTier;

pub use llama::{LlamaLlm, LlamaOptions, LlamaStats};
pub use openai::OpenAiLlm;

/// Capacity of the event channel of one reply. Generation blocks (back-pressure) when the
/// consumer lags this many events behind; a few hundred milliseconds of tokens.
pub const EVENT_CHANNEL_CAPACITY: usize = 64;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, answering the assistant message that asked for it.
    Tool,
}

impl Role {
    /// The OpenAI wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of the conversation so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// For [`Role::Tool`]: the [`ToolCall::id`] this message answers.
    pub tool_call_id: Option<String>,
    /// For [`Role::Assistant`]: the tools the model asked to call in this turn.
    pub tool_calls: Vec<ToolCall>,
}

impl ChatMessage {
    fn plain(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_call_id: None, tool_calls: Vec::new() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::plain(Role::Assistant, content)
    }
    /// The result of the tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(tool_call_id.into()), ..Self::plain(Role::Tool, content) }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Provider-assigned id, echoed back in the [`Role::Tool`] message with the result.
    pub id: String,
    pub name: String,
    /// The arguments object; a JSON string when the model produced invalid JSON.
    pub arguments: serde_json::Value,
}

/// One reply to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// Tools offered to the model (the embedded engine ignores them, see [`llama`]).
    pub tools: Vec<ToolSpec>,
    /// Remote model name, from the agent's tier ([`ModelTiers`]); ignored by the embedded engine.
    pub model: String,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature; `0` = greedy.
    pub temperature: f32,
    /// Call id: lets an engine route the call's turns to the context holding its KV cache.
    pub session: Option<String>,
}

/// What a reply stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The next piece of the reply text (whole UTF-8 characters).
    Delta(String),
    /// A complete tool call (arguments assembled from all its chunks).
    ToolCall(ToolCall),
    /// The reply is complete; always the last event of a successful stream.
    Done {
        /// `stop`, `length`, `tool_calls`, … (OpenAI's vocabulary).
        finish_reason: String,
        /// Tokens of the whole prompt (including any reused from a KV cache).
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

/// LLM faults. `Busy` is an expected state (the queue is full: fall back or apologise); the
/// rest are failures.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("language model busy: its queue is full")]
    Busy,
    #[error("language model engine stopped")]
    Gone,
    #[error("cannot load language model from {path}: {reason}")]
    Load { path: std::path::PathBuf, reason: String },
    #[error("the prompt ({prompt_tokens} tokens) does not fit the context ({context_tokens} tokens)")]
    ContextFull { prompt_tokens: usize, context_tokens: usize },
    /// A remote failure; `status` is the HTTP status when the server answered.
    #[error("remote language model failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Remote { status: Option<u16>, message: String },
    #[error("language model failed: {0}")]
    Engine(String),
}

pub type Result<T, E = LlmError> = std::result::Result<T, E>;

/// A chat model. Implementations are cheap to share and safe to call concurrently.
pub trait LlmEngine: Send + Sync + 'static {
    /// Short stable name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Streams the reply; dropping the receiver cancels generation (within a token).
    fn chat(&self, req: ChatRequest) -> mpsc::Receiver<Result<ChatEvent, LlmError>>;
}

/// How engines are passed around.
pub type SharedLlm = Arc<dyn LlmEngine>;

/// A receiver that yields one error and ends (for requests refused before they start).
pub(crate) fn failed(err: LlmError) -> mpsc::Receiver<Result<ChatEvent>> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Err(err));
    rx
}

/// Remote model name per agent `modelTier`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelTiers {
    /// Lowest latency (default `gpt-4o-mini`).
    pub turbo: String,
    /// The default tier (default `gpt-4o-mini`).
    pub balanced: String,
    /// Strongest model (default `gpt-4o`).
    pub max: String,
}

impl Default for ModelTiers {
    fn default() -> Self {
        Self { turbo: "gpt-4o-mini".into(), balanced: "gpt-4o-mini".into(), max: "gpt-4o".into() }
    }
}

impl ModelTiers {
    /// The model name for `tier`.
    pub fn model(&self, tier: ModelTier) -> &str {
        match tier {
            ModelTier::Turbo => &self.turbo,
            ModelTier::Balanced => &self.balanced,
            ModelTier::Max => &self.max,
        }
    }
}

/// Turns a byte stream cut at arbitrary points (token pieces) into whole UTF-8 characters.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes`; returns the text complete so far (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for the next piece.
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                out
            }
        }
    }

    /// Whatever is left at the end of the stream.
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_joins_split_characters() {
        let text = "né 👋 ok";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut s = Utf8Stream::default();
            let mut out = s.push(&bytes[..cut]);
            out += &s.push(&bytes[cut..]);
            out += &s.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        assert_eq!(s.push(&[0x91, 0x8B]), "👋");
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
    }

    #[test]
    fn tiers_default_and_lookup() {
        let t = ModelTiers::default();
        assert_eq!(t.model(ModelTier::Turbo), "gpt-4o-mini");
        assert_eq!(t.model(ModelTier::Balanced), "gpt-4o-mini");
        assert_eq!(t.model(ModelTier::Max), "gpt-4o");
    }

    #[test]
    fn remote_error_names_status() {
        let e = LlmError::Remote { status: Some(500), message: "boom".into() };
        assert_eq!(e.to_string(), "remote language model failed (HTTP 500): boom");
        let e = LlmError::Remote { status: None, message: "refused".into() };
        assert_eq!(e.to_string(), "remote language model failed: refused");
    }
}
