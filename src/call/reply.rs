//! How an agent answers a caller turn: the [`Responder`] interface the conversation talks
//! through, and what a reply stream carries.
//!
//! The conversation owns the call's history (truncated to what the caller really heard) and
//! hands a [`ReplyRequest`] to the agent's responder for each caller turn: hosted mode
//! ([`crate::call::hosted`]: the LLM with the agent's system prompt and tools) or webhook mode
//! ([`crate::webhook`]: the customer's server). The responder answers at once with a bounded
//! receiver of [`ReplyEvent`]s; dropping the receiver cancels the reply (a barge-in).
//!
//! Text arrives in pieces of any size (LLM token deltas, webhook lines). The conversation cuts
//! it into sentences for the speaker ([`crate::call::sentences::SentenceChunker`]);
//! `flush: true` marks a piece that must be spoken now even without a sentence end (a webhook's
//! streamed line).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

/// Capacity of one reply's event channel.
pub const REPLY_EVENTS: usize = 64;

/// Who said a history item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Agent,
}

/// One turn of the call so far. Agent items hold only what the caller heard.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub speaker: Speaker,
    pub text: String,
    /// Wall-clock time the item was said (RFC 3339), for webhooks' `recentHistory`.
    pub at: String,
}

/// Everything a responder may use to answer one caller turn.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub call_id: String,
    pub agent_id: String,
    /// Turns before this one, oldest first (not including `caller_text`).
    pub history: Vec<HistoryItem>,
    /// The caller's turn being answered.
    pub caller_text: String,
    pub confidence: f32,
    /// Call variables for `{{name}}` placeholders: `from`, `to`, `callId`, `agentName` and the
    /// start message's custom parameters.
    pub variables: Arc<BTreeMap<String, String>>,
}

/// An action the agent decided on (a tool call, or an intent detected in the caller's words).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyAction {
    /// Say `goodbye` (or a default closing line), then hang up.
    EndCall { goodbye: Option<String> },
    /// Say a handoff line, then transfer to the agent's `transferNumber`.
    Transfer { line: Option<String> },
    /// Text `body` to the caller through the messaging provider.
    SendMessage { body: String },
}

/// What a reply stream carries, in order; `Done` or `Failed` ends it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// A piece of the reply text. `flush`: speak everything pending now (end of a streamed line).
    Text { text: String, flush: bool },
    /// An action, carried out after the text before it has been spoken.
    Action(ReplyAction),
    /// The reply is complete.
    Done,
    /// The reply failed; the caller hears the fallback line. `provider` names the failing
    /// service for `switchboard_provider_errors_total`.
    Failed { provider: &'static str, message: String },
}

/// Answers caller turns for one call. Cheap to share; called once per caller turn.
pub trait Responder: Send + Sync + 'static {
    /// Short stable name for logs and metrics (`llm`, `webhook`).
    fn name(&self) -> &'static str;
    /// Starts the reply; returns at once. Dropping the receiver cancels it.
    fn respond(&self, req: ReplyRequest) -> mpsc::Receiver<ReplyEvent>;
    /// Called once when the call starts: a chance to prepare (e.g. prefill the model's cache
    /// with the system prompt) so the first reply is fast.
    fn warm(&self, _call_id: &str) {}
}

pub type SharedResponder = Arc<dyn Responder>;

/// Fills `{{name}}` placeholders from `vars`; unknown names become empty, `{{ name }}` with
/// spaces is accepted, and an unclosed `{{` is kept as written.
pub fn fill_placeholders(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let vars: BTreeMap<String, String> =
            [("from".to_string(), "+15550001111".to_string()), ("name".to_string(), "Ada".to_string())]
                .into_iter()
                .collect();
        assert_eq!(
            fill_placeholders("Hi {{name}}, you called from {{ from }}.", &vars),
            "Hi Ada, you called from +15550001111."
        );
        assert_eq!(fill_placeholders("unknown: [{{nope}}]", &vars), "unknown: []");
        assert_eq!(fill_placeholders("open {{name", &vars), "open {{name");
        assert_eq!(fill_placeholders("no placeholders", &vars), "no placeholders");
        assert_eq!(fill_placeholders("{{name}}{{name}}", &vars), "AdaAda");
    }
}
