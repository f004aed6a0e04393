//! The JSON envelope every webhook request carries (PROTOCOLS.md §1 "Webhooks"):
//! `{event, channel: "voice", timestamp, agentId, data: {callId, numberId, from, to, status,
//! transcript, confidence, direction}, recentHistory: [{content, direction, channel, at}]}`.
//!
//! The body is built once, as a string, and that exact string is what gets signed, sent and
//! stored in the delivery record.

use serde::Serialize;

use crate::call::reply::{HistoryItem, Speaker};

/// A caller turn; the reply is spoken.
pub const EVENT_MESSAGE: &str = "agent.message";
/// The call is over; `data.transcript` and `recentHistory` carry the whole conversation.
pub const EVENT_CALL_ENDED: &str = "agent.call_ended";
/// Sent by `POST /v1/agents/{id}/webhook/test`; the answer's body is ignored.
pub const EVENT_TEST: &str = "agent.test";

/// The call an event belongs to, as the lead's call code knows it at call start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallInfo {
    pub call_id: String,
    /// The id of our number the call came in on (or went out from), if any.
    pub number_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event: &'static str,
    /// Always `voice` here.
    pub channel: &'static str,
    /// When the event happened (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    pub agent_id: String,
    pub data: EventData,
    pub recent_history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub call_id: Option<String>,
    pub number_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The call's status: `in-progress` during a call, its final status in `agent.call_ended`.
    pub status: String,
    /// `agent.message`: the caller's turn. `agent.call_ended`: the whole conversation, one
    /// `Caller: …` / `Agent: …` line per turn.
    pub transcript: String,
    /// Speech-recognition confidence of the turn (0–1); `null` for `agent.call_ended`.
    pub confidence: Option<f32>,
    pub direction: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryEntry {
    pub content: String,
    /// `inbound` (the caller said it) or `outbound` (the agent said it).
    pub direction: &'static str,
    pub channel: &'static str,
    pub at: String,
}

impl From<&HistoryItem> for HistoryEntry {
    fn from(item: &HistoryItem) -> Self {
        Self {
            content: item.text.clone(),
            direction: match item.speaker {
                Speaker::Caller => "inbound",
                Speaker::Agent => "outbound",
            },
            channel: "voice",
            at: item.at.clone(),
        }
    }
}

impl Envelope {
    /// The exact body to send.
    pub fn to_body(&self) -> String {
        // Plain structs of strings and numbers: serialisation cannot fail.
        serde_json::to_string(self).expect("envelope serialises")
    }
}

/// `agent.message` for one caller turn: the last `context_limit` items of `history`.
pub fn message(
    agent_id: &str,
    call: &CallInfo,
    history: &[HistoryItem],
    context_limit: usize,
    caller_text: &str,
    confidence: f32,
) -> Envelope {
    let recent = &history[history.len().saturating_sub(context_limit)..];
    Envelope {
        event: EVENT_MESSAGE,
        channel: "voice",
        timestamp: crate::store::now_text(),
        agent_id: agent_id.to_string(),
        data: data(call, "in-progress", caller_text.to_string(), Some(confidence)),
        recent_history: recent.iter().map(HistoryEntry::from).collect(),
    }
}

/// `agent.call_ended` with the whole conversation.
pub fn call_ended(agent_id: &str, call: &CallInfo, status: &str, transcript: &[HistoryItem]) -> Envelope {
    let text: Vec<String> = transcript
        .iter()
        .map(|i| match i.speaker {
            Speaker::Caller => format!("Caller: {}", i.text),
            Speaker::Agent => format!("Agent: {}", i.text),
        })
        .collect();
    Envelope {
        event: EVENT_CALL_ENDED,
        channel: "voice",
        timestamp: crate::store::now_text(),
        agent_id: agent_id.to_string(),
        data: data(call, status, text.join("\n"), None),
        recent_history: transcript.iter().map(HistoryEntry::from).collect(),
    }
}

/// `agent.test`: shaped like a caller turn on no call, so a receiver can exercise its
/// signature check and its reply handler.
pub fn test(agent_id: &str) -> Envelope {
    Envelope {
        event: EVENT_TEST,
        channel: "voice",
        timestamp: crate::store::now_text(),
        agent_id: agent_id.to_string(),
        data: EventData {
            call_id: None,
            number_id: None,
            from: None,
            to: None,
            status: "test".to_string(),
            transcript: "This is a test event from Switchboard.".to_string(),
            confidence: Some(1.0),
            direction: "inbound".to_string(),
        },
        recent_history: Vec::new(),
    }
}

fn data(call: &CallInfo, status: &str, transcript: String, confidence: Option<f32>) -> EventData {
    EventData {
        call_id: Some(call.call_id.clone()),
        number_id: call.number_id.clone(),
        from: call.from.clone(),
        to: call.to.clone(),
        status: status.to_string(),
        transcript,
        confidence,
        direction: call.direction.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn item(speaker: Speaker, text: &str, at: &str) -> HistoryItem {
        HistoryItem { speaker, text: text.to_string(), at: at.to_string() }
    }

    fn call() -> CallInfo {
        CallInfo {
            call_id: "call_1".into(),
            number_id: Some("num_1".into()),
            from: Some("+15550001111".into()),
            to: Some("+15550002222".into()),
            direction: "inbound".into(),
        }
    }

    #[test]
    fn message_envelope_has_the_protocol_shape_and_honours_the_context_limit() {
        let history = vec![
            item(Speaker::Agent, "Hello, how can I help?", "2026-01-01T00:00:00.000Z"),
            item(Speaker::Caller, "I need a table", "2026-01-01T00:00:02.000Z"),
            item(Speaker::Agent, "For how many?", "2026-01-01T00:00:03.000Z"),
        ];
        let env = message("agt_1", &call(), &history, 2, "Four people", 0.5);
        let v: Value = serde_json::from_str(&env.to_body()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert_eq!(v["event"], "agent.message");
        assert_eq!(v["channel"], "voice");
        assert_eq!(v["agentId"], "agt_1");
        chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).expect("RFC 3339");
        assert_eq!(
            v["data"],
            json!({"callId": "call_1", "numberId": "num_1", "from": "+15550001111", "to": "+15550002222",
                   "status": "in-progress", "transcript": "Four people", "confidence": 0.5,
                   "direction": "inbound"})
        );
        assert_eq!(
            v["recentHistory"],
            json!([
                {"content": "I need a table", "direction": "inbound", "channel": "voice", "at": "2026-01-01T00:00:02.000Z"},
                {"content": "For how many?", "direction": "outbound", "channel": "voice", "at": "2026-01-01T00:00:03.000Z"},
            ])
        );
        assert_eq!(message("agt_1", &call(), &history, 0, "x", 1.0).recent_history, vec![]);
        assert_eq!(message("agt_1", &call(), &history, 50, "x", 1.0).recent_history.len(), 3);
    }

    #[test]
    fn call_ended_carries_the_whole_transcript() {
        let transcript = vec![item(Speaker::Caller, "Hi", "t1"), item(Speaker::Agent, "Hello!", "t2")];
        let v: Value =
            serde_json::from_str(&call_ended("agt_1", &call(), "completed", &transcript).to_body()).unwrap();
        assert_eq!(v["event"], "agent.call_ended");
        assert_eq!(v["data"]["status"], "completed");
        assert_eq!(v["data"]["transcript"], "Caller: Hi\nAgent: Hello!");
        assert_eq!(v["data"]["confidence"], Value::Null);
        assert_eq!(v["recentHistory"].as_array().unwrap().len(), 2);
        assert_eq!(v["recentHistory"][1]["direction"], "outbound");
    }
}
