//! Webhook voice mode and call events (PROTOCOLS.md §1 "Webhooks").
//!
//! An agent may have one webhook: a URL, a signing secret, how much history a turn carries and
//! how long to wait. In voice mode `webhook` each caller turn is POSTed there as a signed
//! `agent.message` and the answer is spoken ([`WebhookResponder`]); when a call ends an
//! `agent.call_ended` event is queued in the database and delivered by a background worker with
//! retries ([`deliver`]). Every attempt is a row in `webhook_deliveries`.
//!
//! ```text
//! sign       HMAC-SHA256 signatures, secrets
//! envelope   the JSON body of every event (built once: signed, sent and stored as is)
//! responder  WebhookResponder: live turns (JSON or streamed ndjson replies), never retried
//! deliver    signed POSTs; the queue worker (backoff, 5 attempts, survives restarts)
//! api        POST|GET|DELETE /v1/agents/{id}/webhook, …/deliveries, …/test
//! ```
//!
//! Wiring for the call code: [`responder_for`] at call start, [`enqueue_call_ended`] at the end.

pub mod api;
pub mod deliver;
pub mod envelope;
pub mod responder;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

pub use deliver::{spawn_worker, RetryPolicy, MAX_ATTEMPTS};
pub use envelope::CallInfo;
pub use responder::WebhookResponder;

use crate::call::reply::HistoryItem;
use crate::metrics::Metrics;
use crate::store::{DeliveryStatus, NewDelivery, Store, StoreError, WebhookDelivery};

/// Connection set-up bound for webhook requests (the webhook's own timeout bounds the rest).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = WebhookError> = std::result::Result<T, E>;

/// A client for webhook requests: no redirects (a 3xx is a failed delivery, never a re-sent
/// body), a connect timeout. Build one per server and share it (`AppState::webhook_http`): it
/// is a connection pool.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The responder for a call of `agent_id` in webhook voice mode; `None` when the agent has no
/// webhook. The webhook is read once: changes apply from the next call.
pub async fn responder_for(
    store: &Store,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    agent_id: &str,
    call: CallInfo,
) -> Result<Option<WebhookResponder>> {
    let Some(hook) = store.get_webhook(agent_id).await? else { return Ok(None) };
    Ok(Some(WebhookResponder::new(store.clone(), http, metrics, hook, call)))
}

/// Queues `agent.call_ended` for the agent's webhook (the body is built now and stored, so it
/// survives restarts); the delivery worker sends it. `status` is the call's final status
/// (`completed`, `failed` …); `transcript` is the whole conversation, oldest first. `None` when
/// the agent has no webhook.
pub async fn enqueue_call_ended(
    store: &Store,
    agent_id: &str,
    call: &CallInfo,
    status: &str,
    transcript: &[HistoryItem],
) -> Result<Option<WebhookDelivery>> {
    if store.get_webhook(agent_id).await?.is_none() {
        return Ok(None);
    }
    let body = envelope::call_ended(agent_id, call, status, transcript).to_body();
    let delivery = store
        .insert_delivery(NewDelivery {
            agent_id: agent_id.to_string(),
            call_id: Some(call.call_id.clone()),
            event_type: envelope::EVENT_CALL_ENDED.to_string(),
            payload: body,
            status: DeliveryStatus::Pending,
            http_status: None,
            attempt_count: 0,
            last_attempt_at: None,
            next_retry_at: Some(crate::store::now_text()),
            error_message: None,
        })
        .await?;
    tracing::debug!(delivery_id = %delivery.id, call_id = %call.call_id, "agent.call_ended queued");
    Ok(Some(delivery))
}
