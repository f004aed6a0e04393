//! [`WebhookResponder`]: webhook voice mode. Each caller turn is POSTed to the customer's server
//! as a signed `agent.message`; the answer is the agent's reply.
//!
//! Replies: `application/x-ndjson` — one `{"text": "...", "interim": true|false}` object per
//! line, each spoken as soon as its line arrives (the body is read chunk by chunk, never awaited
//! whole) — or anything else parsed as one JSON object `{"text": "..."}`. Either may carry
//! `"action": "end_call" | "transfer"`: that object's text becomes the goodbye / handoff line of
//! [`ReplyAction::EndCall`] / [`ReplyAction::Transfer`] instead of a plain text piece.
//! Non-2xx, no complete answer within the webhook's timeout, or a malformed body end the reply
//! with [`ReplyEvent::Failed`]. Live turns are never retried (the conversation plays its
//! holding/fallback line); each one is recorded as a delivery.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::deliver::{describe, post_signed};
use super::envelope::{self, CallInfo, EVENT_MESSAGE};
use crate::call::reply::{ReplyAction, ReplyEvent, ReplyRequest, Responder, REPLY_EVENTS};
use crate::metrics::Metrics;
use crate::store::{DeliveryStatus, NewDelivery, Store, Webhook};

/// Largest reply body (JSON) or single ndjson line accepted.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Name in `ReplyEvent::Failed` and logs.
const PROVIDER: &str = "webhook";

/// Answers caller turns through the agent's webhook. Cheap to clone.
#[derive(Clone)]
pub struct WebhookResponder {
    inner: Arc<Shared>,
}

struct Shared {
    /// Where each turn's delivery is recorded.
    store: Store,
    /// Shared connection pool (keep-alive to the customer's server across turns).
    http: reqwest::Client,
    /// `switchboard_webhook_deliveries_total`.
    metrics: Arc<Metrics>,
    /// The webhook as it was at call start (URL, secret, limits).
    hook: Webhook,
    /// The call's identity for every envelope.
    call: CallInfo,
}

impl WebhookResponder {
    pub fn new(
        store: Store,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
        hook: Webhook,
        call: CallInfo,
    ) -> Self {
        Self { inner: Arc::new(Shared { store, http, metrics, hook, call }) }
    }

    /// The webhook this responder posts to.
    pub fn webhook(&self) -> &Webhook {
        &self.inner.hook
    }
}

impl Responder for WebhookResponder {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn respond(&self, req: ReplyRequest) -> mpsc::Receiver<ReplyEvent> {
        let (tx, rx) = mpsc::channel(REPLY_EVENTS);
        let shared = self.inner.clone();
        tokio::spawn(async move { shared.turn(req, tx).await });
        rx
    }
}

/// How a live turn ended.
#[derive(Debug)]
enum TurnError {
    /// The receiver was dropped (barge-in, call over): nothing more to do.
    Cancelled,
    Timeout(u64),
    Http(String),
    Status(u16),
    Malformed(String),
}

impl TurnError {
    fn message(&self) -> String {
        match self {
            Self::Cancelled => "reply cancelled: the conversation stopped listening".into(),
            Self::Timeout(s) => format!("no complete reply within {s} s"),
            Self::Http(e) => format!("request failed: {e}"),
            Self::Status(s) => format!("the endpoint answered HTTP {s}"),
            Self::Malformed(e) => format!("malformed reply: {e}"),
        }
    }
}

/// One reply object (a JSON body or an ndjson line). Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct ReplyLine {
    #[serde(default)]
    text: Option<String>,
    /// ndjson only: more lines follow. Informational; every line is spoken.
    #[serde(default)]
    #[allow(dead_code)]
    interim: Option<bool>,
    #[serde(default)]
    action: Option<String>,
}

impl Shared {
    async fn turn(self: Arc<Self>, req: ReplyRequest, tx: mpsc::Sender<ReplyEvent>) {
        let body = envelope::message(
            &req.agent_id,
            &self.call,
            &req.history,
            self.hook.context_limit.max(0) as usize,
            &req.caller_text,
            req.confidence,
        )
        .to_body();
        let timeout = Duration::from_secs(self.hook.timeout_s.max(1) as u64);
        let attempted_at = crate::store::now_text();
        let mut http_status: Option<u16> = None;
        let result = tokio::select! {
            biased;
            () = tx.closed() => Err(TurnError::Cancelled),
            r = tokio::time::timeout(timeout, self.exchange(&body, &tx, &mut http_status)) => {
                r.unwrap_or(Err(TurnError::Timeout(timeout.as_secs())))
            }
        };
        // The outcome reaches the conversation first; the record is written after.
        if let Err(e) = &result {
            if !matches!(e, TurnError::Cancelled) {
                tracing::info!(call_id = %req.call_id, error = %e.message(), "webhook turn failed");
                let _ = tx.send(ReplyEvent::Failed { provider: PROVIDER, message: e.message() }).await;
            }
        }
        drop(tx);
        let answered = http_status.is_some_and(|s| (200..300).contains(&s));
        let status = match &result {
            Ok(()) => DeliveryStatus::Delivered,
            Err(TurnError::Cancelled) if answered => DeliveryStatus::Delivered,
            Err(_) => DeliveryStatus::Failed,
        };
        self.metrics.webhook_delivery(status.as_str());
        let record = NewDelivery {
            agent_id: self.hook.agent_id.clone(),
            call_id: Some(self.call.call_id.clone()),
            event_type: EVENT_MESSAGE.to_string(),
            payload: body,
            status,
            http_status: http_status.map(i64::from),
            attempt_count: 1,
            last_attempt_at: Some(attempted_at),
            next_retry_at: None,
            error_message: result.err().map(|e| e.message()),
        };
        if let Err(e) = self.store.insert_delivery(record).await {
            tracing::warn!(call_id = %req.call_id, error = %e, "cannot record a webhook turn");
        }
    }

    /// Posts the turn and forwards the reply as events, ending with `Done`.
    async fn exchange(
        &self,
        body: &str,
        tx: &mpsc::Sender<ReplyEvent>,
        http_status: &mut Option<u16>,
    ) -> Result<(), TurnError> {
        let mut resp = post_signed(&self.http, &self.hook, body, None)
            .await
            .map_err(|e| TurnError::Http(describe(e)))?;
        let status = resp.status();
        *http_status = Some(status.as_u16());
        if !status.is_success() {
            return Err(TurnError::Status(status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let streamed = content_type.starts_with("application/x-ndjson")
            || content_type.starts_with("application/jsonl")
            || content_type.starts_with("application/ndjson");
        let read_err = |e: reqwest::Error| TurnError::Http(describe(e));
        if streamed {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(read_err)? {
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    forward(&line, tx).await?;
                }
                if buf.len() > MAX_REPLY_BYTES {
                    return Err(TurnError::Malformed(format!(
                        "a line is longer than {MAX_REPLY_BYTES} bytes"
                    )));
                }
            }
            forward(&buf, tx).await?;
        } else {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(read_err)? {
                buf.extend_from_slice(&chunk);
                if buf.len() > MAX_REPLY_BYTES {
                    return Err(TurnError::Malformed(format!(
                        "the body is longer than {MAX_REPLY_BYTES} bytes"
                    )));
                }
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                return Err(TurnError::Malformed("empty body; expected {\"text\": \"...\"}".into()));
            }
            forward(&buf, tx).await?;
        }
        tx.send(ReplyEvent::Done).await.map_err(|_| TurnError::Cancelled)
    }
}

/// Parses one reply object (blank input is skipped) and sends its events.
async fn forward(raw: &[u8], tx: &mpsc::Sender<ReplyEvent>) -> Result<(), TurnError> {
    for event in parse_reply(raw)? {
        tx.send(event).await.map_err(|_| TurnError::Cancelled)?;
    }
    Ok(())
}

/// The events one reply object stands for.
fn parse_reply(raw: &[u8]) -> Result<Vec<ReplyEvent>, TurnError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let line: ReplyLine = match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(v) if v.is_object() => {
            serde_json::from_value(v).map_err(|e| TurnError::Malformed(e.to_string()))?
        }
        Ok(_) => return Err(TurnError::Malformed("expected a JSON object like {\"text\": \"...\"}".into())),
        Err(e) => return Err(TurnError::Malformed(format!("not JSON: {e}"))),
    };
    let text = line.text.filter(|t| !t.trim().is_empty());
    let event = match line.action.as_deref() {
        None => text.map(|text| ReplyEvent::Text { text, flush: true }),
        Some("end_call") => Some(ReplyEvent::Action(ReplyAction::EndCall { goodbye: text })),
        Some("transfer") => Some(ReplyEvent::Action(ReplyAction::Transfer { line: text })),
        Some(other) => {
            return Err(TurnError::Malformed(format!("action: '{other}' is not one of end_call, transfer")))
        }
    };
    Ok(event.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(raw: &str) -> Result<Vec<ReplyEvent>, String> {
        parse_reply(raw.as_bytes()).map_err(|e| e.message())
    }

    #[test]
    fn reply_objects_become_events() {
        assert_eq!(
            events(r#"{"text": "Hi there", "interim": true, "extra": 1}"#).unwrap(),
            vec![ReplyEvent::Text { text: "Hi there".into(), flush: true }]
        );
        assert_eq!(events("  \n").unwrap(), vec![]);
        assert_eq!(events(r#"{"text": ""}"#).unwrap(), vec![]);
        assert_eq!(
            events(r#"{"text": "Goodbye!", "action": "end_call"}"#).unwrap(),
            vec![ReplyEvent::Action(ReplyAction::EndCall { goodbye: Some("Goodbye!".into()) })]
        );
        assert_eq!(
            events(r#"{"action": "transfer"}"#).unwrap(),
            vec![ReplyEvent::Action(ReplyAction::Transfer { line: None })]
        );
    }

    #[test]
    fn malformed_replies_are_errors_naming_the_problem() {
        assert!(events("nope").unwrap_err().contains("not JSON"));
        assert!(events(r#"["text"]"#).unwrap_err().contains("JSON object"));
        assert!(events(r#"{"text": 5}"#).unwrap_err().contains("invalid type"));
        assert!(events(r#"{"text": "x", "action": "dance"}"#).unwrap_err().contains("action: 'dance'"));
    }
}
