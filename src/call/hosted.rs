//! Hosted mode: the agent's replies come from the language model, steered by its system prompt.
//!
//! Each caller turn becomes one chat request: the system prompt (placeholders filled with the
//! call's variables, plus a short note on speaking over the phone), the history the caller
//! actually heard, and the turn. The model's text streams back as it is generated; its tool
//! calls become [`ReplyAction`]s. Tools offered: `end_call`, `transfer_call` (only when the
//! agent has a `transferNumber`) and `send_message` (only with `enableMessaging`).
//!
//! Small embedded models do not call tools reliably, so clear intents in the caller's words are
//! also detected here, before the model is asked: a goodbye ends the call, and asking for a
//! person transfers it when a transfer number is set ([`detect_intent`]).

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use super::reply::{
    fill_placeholders, ReplyAction, ReplyEvent, ReplyRequest, Responder, Speaker, REPLY_EVENTS,
};
use crate::agent::AgentConfig;
use crate::providers::llm::{ChatEvent, ChatMessage, ChatRequest, SharedLlm, ToolCall, ToolSpec};

/// Appended to every system prompt.
const PHONE_NOTE: &str = "You are speaking with a caller on the phone. Answer in one or two short \
sentences of plain spoken language: no lists, no markdown, no emoji.";

/// The user message that asks the model to open the call when there is no `beginMessage`.
const OPEN_CALL: &str = "(The call has just connected. Greet the caller briefly.)";

/// Longest reply, in tokens.
const MAX_REPLY_TOKENS: u32 = 120;

/// Answers with the language model.
pub struct HostedResponder {
    llm: SharedLlm,
    system: String,
    model: String,
    tools: Vec<ToolSpec>,
    transfer: bool,
    temperature: f32,
}

impl HostedResponder {
    /// For `agent`, whose system prompt is filled from `variables` once per call.
    pub fn new(
        llm: SharedLlm,
        agent: &AgentConfig,
        model: String,
        variables: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let prompt =
            agent.system_prompt.as_deref().map(|p| fill_placeholders(p, variables)).unwrap_or_default();
        let system = format!("{}\n\n{PHONE_NOTE}", prompt.trim()).trim().to_string();
        let transfer = agent.transfer_number.as_deref().is_some_and(|n| !n.is_empty());
        let temperature = if llm.name() == crate::providers::llm::openai::ENGINE_NAME { 0.7 } else { 0.0 };
        Self { llm, system, model, tools: tools(transfer, agent.enable_messaging), transfer, temperature }
    }

    /// The chat request for `req` (public for tests).
    pub fn request(&self, req: &ReplyRequest) -> ChatRequest {
        let mut messages = vec![ChatMessage::system(self.system.clone())];
        for item in &req.history {
            match item.speaker {
                Speaker::Caller => messages.push(ChatMessage::user(item.text.clone())),
                Speaker::Agent => messages.push(ChatMessage::assistant(item.text.clone())),
            }
        }
        let turn =
            if req.caller_text.trim().is_empty() { OPEN_CALL.to_string() } else { req.caller_text.clone() };
        messages.push(ChatMessage::user(turn));
        ChatRequest {
            messages,
            tools: self.tools.clone(),
            model: self.model.clone(),
            max_tokens: MAX_REPLY_TOKENS,
            temperature: self.temperature,
            session: Some(req.call_id.clone()),
        }
    }
}

impl Responder for HostedResponder {
    fn name(&self) -> &'static str {
        "llm"
    }

    /// The embedded model prefills the system prompt into the call's context now, so the first
    /// turn reuses it (a cold 250-token prefill costs ~0.5 s on two cores). Remote models are
    /// not asked anything.
    fn warm(&self, call_id: &str) {
        if self.llm.name() != crate::providers::llm::llama::ENGINE_NAME {
            return;
        }
        let req = ChatRequest {
            messages: vec![ChatMessage::system(self.system.clone())],
            tools: Vec::new(),
            model: self.model.clone(),
            max_tokens: 0,
            temperature: self.temperature,
            session: Some(call_id.to_string()),
        };
        let mut events = self.llm.chat(req);
        tokio::spawn(async move { while events.recv().await.is_some() {} });
    }

    fn respond(&self, req: ReplyRequest) -> mpsc::Receiver<ReplyEvent> {
        let (tx, rx) = mpsc::channel(REPLY_EVENTS);
        if let Some(action) = detect_intent(&req.caller_text, self.transfer) {
            let _ = tx.try_send(ReplyEvent::Action(action));
            let _ = tx.try_send(ReplyEvent::Done);
            return rx;
        }
        let chat = self.request(&req);
        let mut events = self.llm.chat(chat);
        let provider = self.llm.name();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = tx.closed() => return, // barge-in: dropping `events` cancels generation
                    ev = events.recv() => ev,
                };
                let out = match ev {
                    Some(Ok(ChatEvent::Delta(text))) => ReplyEvent::Text { text, flush: false },
                    Some(Ok(ChatEvent::ToolCall(call))) => match action_of(&call) {
                        Some(a) => ReplyEvent::Action(a),
                        None => {
                            tracing::warn!(tool = %call.name, "the model called an unknown tool");
                            continue;
                        }
                    },
                    Some(Ok(ChatEvent::Done { .. })) => ReplyEvent::Done,
                    Some(Err(e)) => ReplyEvent::Failed { provider, message: e.to_string() },
                    None => ReplyEvent::Failed { provider, message: "the model's stream ended early".into() },
                };
                let last = matches!(out, ReplyEvent::Done | ReplyEvent::Failed { .. });
                if tx.send(out).await.is_err() || last {
                    return;
                }
            }
        });
        rx
    }
}

/// The tools offered to the model.
fn tools(transfer: bool, messaging: bool) -> Vec<ToolSpec> {
    let mut tools = vec![ToolSpec {
        name: "end_call".into(),
        description: "End the phone call after saying goodbye, when the caller is done.".into(),
        parameters: json!({"type": "object", "properties": {
            "goodbye": {"type": "string", "description": "The closing line to say before hanging up."}
        }}),
    }];
    if transfer {
        tools.push(ToolSpec {
            name: "transfer_call".into(),
            description:
                "Transfer the caller to a human colleague when they ask for a person or you cannot help."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "line": {"type": "string", "description": "What to say before transferring."}
            }}),
        });
    }
    if messaging {
        tools.push(ToolSpec {
            name: "send_message".into(),
            description: "Send the caller a text message (SMS), e.g. an address, a link or a confirmation."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "body": {"type": "string", "description": "The text of the message."}
            }, "required": ["body"]}),
        });
    }
    tools
}

/// The action a tool call asks for.
fn action_of(call: &ToolCall) -> Option<ReplyAction> {
    let text = |key: &str| {
        call.arguments
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match call.name.as_str() {
        "end_call" => Some(ReplyAction::EndCall { goodbye: text("goodbye") }),
        "transfer_call" => Some(ReplyAction::Transfer { line: text("line") }),
        "send_message" => text("body").map(|body| ReplyAction::SendMessage { body }),
        _ => None,
    }
}

/// A clear intent in the caller's words: a goodbye, or (when `transfer` is possible) asking for
/// a person. Deliberately narrow: a goodbye must end the turn or be most of a short turn.
pub fn detect_intent(caller_text: &str, transfer: bool) -> Option<ReplyAction> {
    let norm: String = caller_text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect();
    let words: Vec<&str> = norm.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let text = words.join(" ");
    const FAREWELLS: &[&str] =
        &["bye", "goodbye", "bye bye", "good bye", "see you", "talk to you later", "take care"];
    const DONE: &[&str] =
        &["that's all", "that is all", "that's it", "nothing else", "no that's all", "hang up"];
    let tail: String = words[words.len().saturating_sub(4)..].join(" ");
    let says_farewell = FAREWELLS.iter().any(|f| tail.ends_with(f) || tail == *f);
    let short = words.len() <= 8;
    if says_farewell || (short && DONE.iter().any(|d| text.contains(d))) {
        return Some(ReplyAction::EndCall { goodbye: None });
    }
    if transfer {
        const PERSON: &[&str] = &[
            "speak to a person",
            "speak to a human",
            "talk to a person",
            "talk to a human",
            "real person",
            "speak to someone",
            "talk to someone",
            "representative",
            "operator",
            "transfer me",
            "speak to an agent",
            "talk to an agent",
        ];
        if PERSON.iter().any(|p| text.contains(p)) {
            return Some(ReplyAction::Transfer { line: None });
        }
    }
    None
}

/// The hosted responder for a call, if the agent is hosted and a language model is loaded.
pub fn responder(
    llm: Option<&SharedLlm>,
    agent: &AgentConfig,
    model: String,
    variables: &std::collections::BTreeMap<String, String>,
) -> Option<Arc<dyn Responder>> {
    llm.map(|llm| {
        Arc::new(HostedResponder::new(Arc::clone(llm), agent, model, variables)) as Arc<dyn Responder>
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodbyes_end_the_call() {
        for t in [
            "Goodbye.",
            "Okay, thanks, bye!",
            "Thank you so much, bye bye.",
            "No, that's all.",
            "That's it, thanks",
            "ok talk to you later",
        ] {
            assert_eq!(detect_intent(t, false), Some(ReplyAction::EndCall { goodbye: None }), "{t}");
        }
        for t in [
            "I want to say goodbye to my old plan and switch to the new one",
            "Is that all you have for Tuesday morning between nine and twelve please",
            "What time do you open?",
            "",
        ] {
            assert_eq!(detect_intent(t, false), None, "{t}");
        }
    }

    #[test]
    fn asking_for_a_person_transfers_only_when_possible() {
        let t = "Can I speak to a real person please?";
        assert_eq!(detect_intent(t, true), Some(ReplyAction::Transfer { line: None }));
        assert_eq!(detect_intent(t, false), None);
        assert_eq!(
            detect_intent("Transfer me to billing.", true),
            Some(ReplyAction::Transfer { line: None })
        );
    }

    #[test]
    fn tool_calls_map_to_actions() {
        let call = |name: &str, args: serde_json::Value| ToolCall {
            id: "1".into(),
            name: name.into(),
            arguments: args,
        };
        assert_eq!(action_of(&call("end_call", json!({}))), Some(ReplyAction::EndCall { goodbye: None }));
        assert_eq!(
            action_of(&call("end_call", json!({"goodbye": "Bye now."}))),
            Some(ReplyAction::EndCall { goodbye: Some("Bye now.".into()) })
        );
        assert_eq!(
            action_of(&call("transfer_call", json!({"line": " "}))),
            Some(ReplyAction::Transfer { line: None })
        );
        assert_eq!(
            action_of(&call("send_message", json!({"body": "12 Main St"}))),
            Some(ReplyAction::SendMessage { body: "12 Main St".into() })
        );
        assert_eq!(action_of(&call("send_message", json!({}))), None);
        assert_eq!(action_of(&call("format_disk", json!({}))), None);
    }

    #[test]
    fn tools_follow_the_agent() {
        let names = |t: Vec<ToolSpec>| t.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(tools(false, false)), ["end_call"]);
        assert_eq!(names(tools(true, true)), ["end_call", "transfer_call", "send_message"]);
    }
}
