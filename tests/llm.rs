//! LLM engines: the embedded SmolLM2-135M-Instruct on llama.cpp (from
//! `models/llm/SmolLM2-135M-Instruct.Q4_1.gguf`) — streaming, cancellation by dropping the
//! receiver, two concurrent sessions, KV-cache prefix reuse on a session's next turn, the
//! queue bound — and the remote OpenAI-compatible engine against a local axum server speaking
//! the SSE chunk format (text deltas, a tool call split over chunks, HTTP errors).
//!
//! Assertions are on behaviour (events, token counts), not on wall time, except for one generous
//! bound that tells "the cancelled reply stopped" from "it ran to its token limit".

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use serde_json::{json, Value};
use switchboard::providers::llm::{
    ChatEvent, ChatMessage, ChatRequest, LlamaLlm, LlamaOptions, LlmEngine, LlmError, OpenAiLlm, ToolCall,
    ToolSpec,
};
use tokio::sync::mpsc::Receiver;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The engine (two contexts), loaded once per test binary; `None` (with a note) only when the
/// weights are absent.
fn engine() -> Option<Arc<LlamaLlm>> {
    static ENGINE: OnceLock<Option<Arc<LlamaLlm>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = model_path();
            if !path.exists() {
                eprintln!("SKIP: {} missing — run `make models`", path.display());
                return None;
            }
            let t = Instant::now();
            let e = LlamaLlm::load(&path, 2).expect("load SmolLM2");
            eprintln!("SmolLM2 loaded with 2 contexts in {:?}", t.elapsed());
            Some(Arc::new(e))
        })
        .clone()
}

/// Serialises the embedded tests that read the shared engine's counters or need both contexts.
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn request(messages: Vec<ChatMessage>, max_tokens: u32, session: Option<&str>) -> ChatRequest {
    ChatRequest {
        messages,
        tools: vec![],
        model: String::new(),
        max_tokens,
        temperature: 0.0,
        session: session.map(str::to_string),
    }
}

fn greeting() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are a friendly receptionist at a restaurant. Answer in one short sentence."),
        ChatMessage::user("Hello! Are you open tonight?"),
    ]
}

/// Everything a reply stream carries, in order.
async fn collect(mut rx: Receiver<Result<ChatEvent, LlmError>>) -> Vec<ChatEvent> {
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("stalled") {
        events.push(e.expect("reply failed"));
    }
    events
}

fn text_of(events: &[ChatEvent]) -> String {
    events.iter().filter_map(|e| if let ChatEvent::Delta(t) = e { Some(t.as_str()) } else { None }).collect()
}

fn deltas(events: &[ChatEvent]) -> usize {
    events.iter().filter(|e| matches!(e, ChatEvent::Delta(_))).count()
}

fn done(events: &[ChatEvent]) -> (String, u32, u32) {
    match events.last() {
        Some(ChatEvent::Done { finish_reason, prompt_tokens, completion_tokens }) => {
            (finish_reason.clone(), *prompt_tokens, *completion_tokens)
        }
        other => panic!("the stream did not end with Done: {other:?}"),
    }
}

#[tokio::test]
async fn embedded_answers_in_streamed_english() {
    let Some(llm) = engine() else { return };
    let _one = exclusive().await;
    assert_eq!(llm.name(), "llama.cpp");
    let events = collect(llm.chat(request(greeting(), 48, None))).await;
    let text = text_of(&events);
    eprintln!("reply: {text:?}");
    let (finish, prompt, completion) = done(&events);
    assert!(deltas(&events) > 1, "one delta only: {events:?}");
    assert!(matches!(finish.as_str(), "stop" | "length"), "{finish}");
    assert!(prompt > 20, "prompt tokens {prompt}");
    assert!(completion > 0 && completion <= 48, "completion tokens {completion}");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 3, "too short: {text:?}");
    let ascii = text.chars().filter(|c| c.is_ascii()).count();
    assert!(ascii * 10 >= text.chars().count() * 9, "not English-looking: {text:?}");
    let common = ["the", "a", "we", "are", "you", "is", "i", "to", "open", "yes", "hello", "our", "tonight"];
    assert!(
        words.iter().any(|w| common.contains(&w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase().as_str())),
        "no common English word in {text:?}"
    );
}

#[tokio::test]
async fn dropping_the_receiver_stops_generation() {
    let Some(llm) = engine() else { return };
    let _one = exclusive().await;
    // Occupy both contexts with long replies, then drop them after their first delta.
    let long = || {
        request(
            vec![ChatMessage::user("Write a very long story about a dragon who learns to cook.")],
            1500,
            None,
        )
    };
    let mut a = llm.chat(long());
    let mut b = llm.chat(long());
    assert!(matches!(a.recv().await, Some(Ok(ChatEvent::Delta(_)))));
    assert!(matches!(b.recv().await, Some(Ok(ChatEvent::Delta(_)))));
    let before = llm.stats().completion_tokens;
    drop(a);
    drop(b);
    // Had the two replies run on, this one would wait for up to 1500 tokens each (~10+ s).
    let t = Instant::now();
    let events = collect(llm.chat(request(greeting(), 8, None))).await;
    let took = t.elapsed();
    done(&events);
    let generated = llm.stats().completion_tokens - before;
    eprintln!("next request served in {took:?}; {generated} tokens generated after the drop");
    assert!(generated < 100, "{generated} tokens generated after both receivers were dropped");
    assert!(took < Duration::from_secs(8), "the next request waited {took:?}");
}

#[tokio::test]
async fn two_sessions_run_concurrently() {
    let Some(llm) = engine() else { return };
    let _one = exclusive().await;
    let a = llm.chat(request(greeting(), 24, Some("call-a")));
    let b = llm.chat(request(
        vec![
            ChatMessage::system("You are a helpful dentist's assistant."),
            ChatMessage::user("Can I book a cleaning next week?"),
        ],
        24,
        Some("call-b"),
    ));
    assert!(llm.queue_depth() <= 2);
    let (ea, eb) = tokio::join!(collect(a), collect(b));
    for events in [&ea, &eb] {
        done(events);
        assert!(!text_of(events).trim().is_empty(), "{events:?}");
    }
    assert_eq!(llm.queue_depth(), 0);
}

#[tokio::test]
async fn next_turn_of_a_session_reuses_the_kv_cache() {
    let Some(llm) = engine() else { return };
    let _one = exclusive().await;
    let session = Some("call-reuse");
    let mut history = greeting();
    let s0 = llm.stats();
    let first = collect(llm.chat(request(history.clone(), 32, session))).await;
    let (_, prompt1, completion1) = done(&first);
    let s1 = llm.stats();

    history.push(ChatMessage::assistant(text_of(&first)));
    history.push(ChatMessage::user("Great, a table for two at seven please."));
    let second = collect(llm.chat(request(history, 32, session))).await;
    let (_, prompt2, _) = done(&second);
    let s2 = llm.stats();

    let prefilled1 = s1.prefilled_tokens - s0.prefilled_tokens;
    let prefilled2 = s2.prefilled_tokens - s1.prefilled_tokens;
    let reused2 = s2.reused_tokens - s1.reused_tokens;
    eprintln!("turn 1: {prompt1} prompt tokens, {prefilled1} prefilled; turn 2: {prompt2} prompt tokens, {prefilled2} prefilled, {reused2} reused");
    assert!(prompt2 > prompt1);
    assert_eq!(prefilled2 + reused2, prompt2 as u64);
    // The whole first turn stays cached: its prompt and the reply's tokens (all but a last one
    // that was sampled at the token limit and never decoded).
    let turn1 = (prompt1 + completion1) as u64;
    assert!(reused2 + 1 >= turn1, "turn 2 reused {reused2} of turn 1's {turn1} tokens");
    assert!(prefilled2 < prompt2 as u64 / 2, "turn 2 prefilled {prefilled2} of {prompt2}");
}

#[tokio::test]
async fn full_queue_answers_busy() {
    let Some(_shared) = engine() else { return };
    // A separate one-context engine with a queue of one.
    let opts = LlamaOptions { queue_capacity: 1, ..LlamaOptions::with_contexts(1) };
    let llm = LlamaLlm::load_with(model_path(), opts).unwrap();
    let long = request(vec![ChatMessage::user("Tell me a long story.")], 200, None);
    let mut running = llm.chat(long.clone());
    assert!(matches!(running.recv().await, Some(Ok(ChatEvent::Delta(_))))); // now in the context
    let _queued = llm.chat(long.clone());
    assert_eq!(llm.queue_depth(), 1);
    let mut refused = llm.chat(long);
    assert!(matches!(refused.recv().await, Some(Err(LlmError::Busy))));
    assert!(refused.recv().await.is_none());
}

#[tokio::test]
async fn missing_weights_fail_to_load() {
    match LlamaLlm::load("/nonexistent/model.gguf", 1) {
        Err(LlmError::Load { path, .. }) => assert_eq!(path, PathBuf::from("/nonexistent/model.gguf")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("loaded a missing file"),
    }
}

// ---------------------------------------------------------------------------------------------
// Remote engine against a local OpenAI-compatible server.

/// What the fake server answers and what it saw.
#[derive(Clone)]
struct Fake {
    status: u16,
    body: String,
    seen: Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn chat_completions(
    axum::extract::State(fake): axum::extract::State<Fake>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    assert_eq!(headers.get("authorization").unwrap(), "Bearer test-key");
    fake.seen.lock().unwrap().push(body);
    let status = axum::http::StatusCode::from_u16(fake.status).unwrap();
    let content_type = if fake.status == 200 { "text/event-stream" } else { "application/json" };
    (status, [("content-type", content_type)], fake.body).into_response()
}

/// Serves `body` with `status` on `POST /v1/chat/completions`; returns the base URL.
async fn serve(status: u16, body: String) -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat_completions))
        .with_state(Fake { status, body, seen: seen.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

fn sse(chunks: &[Value]) -> String {
    let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    })
}

#[tokio::test]
async fn remote_streams_deltas_and_assembles_a_tool_call() {
    let body = sse(&[
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Let me "}), None),
        chunk(json!({"content": "check."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_42", "type": "function",
                                    "function": {"name": "book_table", "arguments": ""}}]}),
            None,
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"party_"}}]}), None),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "size\": 2, \"time\""}}]}), None),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": ": \"19:00\"}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [], "usage": {"prompt_tokens": 57, "completion_tokens": 21, "total_tokens": 78}}),
    ]);
    let (base, seen) = serve(200, body).await;
    let llm = OpenAiLlm::new(base, "test-key");
    assert_eq!(llm.name(), "openai-chat");
    let tool = ToolSpec {
        name: "book_table".into(),
        description: "Books a table".into(),
        parameters: json!({"type": "object", "properties": {"party_size": {"type": "integer"}, "time": {"type": "string"}}}),
    };
    let req =
        ChatRequest { tools: vec![tool], model: "gpt-4o-mini".into(), ..request(greeting(), 100, Some("c")) };
    let events = collect(llm.chat(req)).await;
    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Let me ".into()),
            ChatEvent::Delta("check.".into()),
            ChatEvent::ToolCall(ToolCall {
                id: "call_42".into(),
                name: "book_table".into(),
                arguments: json!({"party_size": 2, "time": "19:00"}),
            }),
            ChatEvent::Done { finish_reason: "tool_calls".into(), prompt_tokens: 57, completion_tokens: 21 },
        ]
    );
    let sent = seen.lock().unwrap().pop().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Hello! Are you open tonight?");
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "book_table");
}

#[tokio::test]
async fn remote_http_error_carries_the_status() {
    let body = json!({"error": {"message": "the model is on fire", "type": "server_error"}}).to_string();
    let (base, _) = serve(500, body).await;
    let mut rx = OpenAiLlm::new(base, "test-key").chat(request(greeting(), 10, None));
    match rx.recv().await {
        Some(Err(LlmError::Remote { status: Some(500), message })) => {
            assert!(message.contains("on fire"), "{message}")
        }
        other => panic!("expected a remote 500, got {other:?}"),
    }
    assert!(rx.recv().await.is_none());

    let body =
        json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}).to_string();
    let (base, _) = serve(401, body).await;
    let mut rx = OpenAiLlm::new(base, "test-key").chat(request(greeting(), 10, None));
    assert!(matches!(rx.recv().await, Some(Err(LlmError::Remote { status: Some(401), .. }))));
}

#[tokio::test]
async fn remote_unreachable_is_a_remote_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut rx = OpenAiLlm::new(format!("http://{addr}/v1"), "k").chat(request(greeting(), 10, None));
    assert!(matches!(rx.recv().await, Some(Err(LlmError::Remote { status: None, .. }))));
}
