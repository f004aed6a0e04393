//! Remote LLM over any OpenAI-compatible `POST {base}/chat/completions` with `stream: true`
//! (OpenAI, Groq, vLLM, Ollama, llama-server, …) through `async-openai`.
//!
//! The request is built as JSON and the chunks are read into lean structs (async-openai's
//! `byot` calls): compatible servers differ in the optional fields, and only the delta text,
//! the tool-call fragments, `finish_reason` and `usage` matter here. Tool-call fragments
//! (`id` and `name` first, then `arguments` in pieces, keyed by `index`) are assembled and
//! emitted as whole [`ToolCall`]s when the choice finishes.
//!
//! HTTP failures become [`LlmError::Remote`] with the status. (A 4xx whose body is not OpenAI's
//! JSON error object reaches us without its status: async-openai reports it as a parse error.)

use std::collections::BTreeMap;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::Client;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{
    failed, ChatEvent, ChatMessage, ChatRequest, LlmEngine, LlmError, Result, Role, ToolCall,
    EVENT_CHANNEL_CAPACITY,
};

/// Name reported by [`LlmEngine::name`].
pub const ENGINE_NAME: &str = "openai-chat";

/// Time allowed to connect; the stream itself may run as long as the reply does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest silence between two chunks before the reply is abandoned.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// OpenAI-compatible streaming chat client.
#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    /// async-openai client carrying the base URL and key.
    client: Client<OpenAIConfig>,
}

impl OpenAiLlm {
    /// `base_url` includes the API version path, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        let config = OpenAIConfig::new().with_api_base(base_url).with_api_key(api_key);
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().unwrap_or_default();
        Self { client: Client::build(http, config) }
    }
}

impl LlmEngine for OpenAiLlm {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn chat(&self, req: ChatRequest) -> mpsc::Receiver<Result<ChatEvent>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return failed(LlmError::Engine("the remote LLM needs a tokio runtime".into()));
        };
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let client = self.client.clone();
        runtime.spawn(async move {
            tokio::select! {
                // The receiver is gone: dropping the stream closes the connection.
                _ = tx.closed() => {}
                result = stream_reply(&client, &req, &tx) => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            }
        });
        rx
    }
}

/// Sends the reply's events into `tx`; returns the error that ended it, if any.
async fn stream_reply(
    client: &Client<OpenAIConfig>,
    req: &ChatRequest,
    tx: &mpsc::Sender<Result<ChatEvent>>,
) -> Result<()> {
    let mut stream =
        client.chat().create_stream_byot::<Value, Chunk>(request_body(req)).await.map_err(remote_err)?;
    let mut calls = ToolCallAssembler::default();
    let mut finish_reason: Option<String> = None;
    let mut usage = Usage::default();
    loop {
        let chunk = match tokio::time::timeout(CHUNK_TIMEOUT, stream.next()).await {
            Err(_) => return Err(LlmError::Remote { status: None, message: "stream stalled".into() }),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(remote_err)?,
        };
        if let Some(u) = chunk.usage {
            usage = u;
        }
        // One reply is requested (n = 1): only choice 0 is read.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    send(tx, ChatEvent::Delta(text)).await?;
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    calls.push(fragment);
                }
            }
            if let Some(reason) = choice.finish_reason {
                for call in calls.finish() {
                    send(tx, ChatEvent::ToolCall(call)).await?;
                }
                finish_reason = Some(reason);
            }
        }
    }
    // Servers that end the stream without a finish_reason still get their calls delivered.
    for call in calls.finish() {
        send(tx, ChatEvent::ToolCall(call)).await?;
    }
    let done = ChatEvent::Done {
        finish_reason: finish_reason.unwrap_or_else(|| "stop".into()),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    };
    send(tx, done).await
}

async fn send(tx: &mpsc::Sender<Result<ChatEvent>>, event: ChatEvent) -> Result<()> {
    // A closed receiver ends the reply; `chat`'s select notices it too.
    tx.send(Ok(event)).await.map_err(|_| LlmError::Gone)
}

/// The chat-completions request body.
fn request_body(req: &ChatRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "messages": req.messages.iter().map(message_json).collect::<Vec<_>>(),
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": { "name": t.name, "description": t.description, "parameters": t.parameters },
                })
            })
            .collect();
    }
    body
}

fn message_json(m: &ChatMessage) -> Value {
    let mut v = json!({ "role": m.role.as_str(), "content": m.content });
    match m.role {
        Role::Tool => v["tool_call_id"] = json!(m.tool_call_id.clone().unwrap_or_default()),
        Role::Assistant if !m.tool_calls.is_empty() => {
            if m.content.is_empty() {
                v["content"] = Value::Null;
            }
            v["tool_calls"] = m
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments = match &c.arguments {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": { "name": c.name, "arguments": arguments },
                    })
                })
                .collect();
        }
        _ => {}
    }
    v
}

fn remote_err(e: OpenAIError) -> LlmError {
    match e {
        OpenAIError::ApiError(r) => {
            LlmError::Remote { status: Some(r.status_code.as_u16()), message: r.api_error.message }
        }
        OpenAIError::Reqwest(e) => {
            LlmError::Remote { status: e.status().map(|s| s.as_u16()), message: e.to_string() }
        }
        other => LlmError::Remote { status: None, message: other.to_string() },
    }
}

/// One streamed `chat.completion.chunk`, reduced to what we read.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallFragment {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

/// Tool calls being streamed, by their `index`.
#[derive(Debug, Default)]
struct ToolCallAssembler {
    calls: BTreeMap<u32, (String, String, String)>,
}

impl ToolCallAssembler {
    fn push(&mut self, f: ToolCallFragment) {
        let (id, name, args) = self.calls.entry(f.index).or_default();
        if let Some(i) = f.id.filter(|i| !i.is_empty()) {
            *id = i;
        }
        if let Some(func) = f.function {
            if let Some(n) = func.name {
                name.push_str(&n);
            }
            if let Some(a) = func.arguments {
                args.push_str(&a);
            }
        }
    }

    /// The calls assembled so far, in index order; arguments that are not JSON stay a string.
    fn finish(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|(_, (_, name, _))| !name.is_empty())
            .map(|(index, (id, name, args))| {
                let arguments = if args.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&args).unwrap_or(Value::String(args))
                };
                let id = if id.is_empty() { format!("call_{index}") } else { id };
                ToolCall { id, name, arguments }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::llm::ToolSpec;

    fn fragment(v: Value) -> ToolCallFragment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn assembles_split_tool_calls() {
        let mut a = ToolCallAssembler::default();
        a.push(fragment(
            json!({"index":0,"id":"call_a","type":"function","function":{"name":"book","arguments":""}}),
        ));
        a.push(fragment(json!({"index":1,"id":"call_b","function":{"name":"hang_up","arguments":""}})));
        a.push(fragment(json!({"index":0,"function":{"arguments":"{\"party"}})));
        a.push(fragment(json!({"index":0,"function":{"arguments":"\": 2}"}})));
        a.push(fragment(json!({"index":1,"function":{"arguments":"not json"}})));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0],
            ToolCall { id: "call_a".into(), name: "book".into(), arguments: json!({"party": 2}) }
        );
        assert_eq!(calls[1].arguments, json!("not json"));
        assert!(a.finish().is_empty());
    }

    #[test]
    fn request_body_carries_tools_and_tool_messages() {
        let call = ToolCall { id: "c1".into(), name: "book".into(), arguments: json!({"party": 2}) };
        let req = ChatRequest {
            messages: vec![
                ChatMessage::system("s"),
                ChatMessage { tool_calls: vec![call], ..ChatMessage::assistant("") },
                ChatMessage::tool("c1", "booked"),
            ],
            tools: vec![ToolSpec {
                name: "book".into(),
                description: "d".into(),
                parameters: json!({"type":"object"}),
            }],
            model: "m".into(),
            max_tokens: 50,
            temperature: 0.3,
            session: None,
        };
        let b = request_body(&req);
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["tools"][0]["function"]["name"], json!("book"));
        assert_eq!(b["messages"][1]["content"], Value::Null);
        assert_eq!(b["messages"][1]["tool_calls"][0]["function"]["arguments"], json!("{\"party\":2}"));
        assert_eq!(b["messages"][2]["tool_call_id"], json!("c1"));
    }
}
