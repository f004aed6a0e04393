//! Sending signed requests, and the delivery worker that drains the durable event queue.
//!
//! Events (`agent.call_ended`) are rows in `webhook_deliveries` with status `pending` and a due
//! time. The worker polls for due rows, claims each one with a lease (so a second worker — or
//! the next poll — does not send it twice), POSTs it signed, and records the attempt: `delivered`
//! on 2xx; otherwise due again after an exponential backoff (`retry_base` × 2^(attempt−1)) until
//! [`MAX_ATTEMPTS`], then `failed`. Rows survive restarts: whatever was pending (or leased by a
//! worker that died) is picked up by the next run.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::sign::{signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::metrics::Metrics;
use crate::store::{AttemptRecord, DeliveryStatus, Store, Webhook, WebhookDelivery};

/// Attempts of a queued event before it is marked `failed`.
pub const MAX_ATTEMPTS: i64 = 5;
/// Deliveries the worker sends at once (one slow endpoint must not hold up the others).
pub const WORKER_CONCURRENCY: usize = 8;
/// Added to the webhook's timeout for the claim lease of one attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Longest wait between attempts, whatever the configured base.
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// Header naming the delivery on queued events and tests, for receivers' de-duplication.
pub const DELIVERY_HEADER: &str = "x-webhook-delivery";

/// Why an attempt did not get a 2xx answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Http(String),
}

impl SendError {
    /// The HTTP status, when the endpoint answered at all.
    pub fn http_status(&self) -> Option<i64> {
        match self {
            Self::Status(s) => Some(i64::from(*s)),
            _ => None,
        }
    }
}

/// POSTs `body` to the webhook, signed now; returns the response (any status) once its headers
/// have arrived. The caller bounds the whole exchange with the webhook's timeout.
pub async fn post_signed(
    http: &reqwest::Client,
    hook: &Webhook,
    body: &str,
    delivery_id: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let timestamp = Utc::now().timestamp();
    let mut req = http
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature(&hook.secret, timestamp, body.as_bytes()))
        .body(body.to_string());
    if let Some(id) = delivery_id {
        req = req.header(DELIVERY_HEADER, id);
    }
    req.send().await
}

/// One bounded attempt whose answer body does not matter (events, tests): the HTTP status.
pub async fn send_once(
    http: &reqwest::Client,
    hook: &Webhook,
    body: &str,
    delivery_id: Option<&str>,
    timeout: Duration,
) -> Result<u16, SendError> {
    let attempt = async {
        let resp =
            post_signed(http, hook, body, delivery_id).await.map_err(|e| SendError::Http(describe(e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(SendError::Timeout(timeout.as_secs())))
}

/// A reqwest error with its source chain (connection refused, DNS …), without the URL's query.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// How the worker paces itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first retry's delay; each next one doubles it.
    pub retry_base: Duration,
    /// How often the queue is checked for due deliveries.
    pub poll_interval: Duration,
}

/// Just under a millisecond: added before a time is stored (truncated to milliseconds) to round it up.
const SUB_MILLI: Duration = Duration::from_micros(999);

impl RetryPolicy {
    /// When attempt `attempts_made + 1` is due, or `None` when no attempt is left.
    pub fn backoff(&self, attempts_made: i64) -> Option<Duration> {
        (attempts_made < MAX_ATTEMPTS).then(|| {
            self.retry_base.saturating_mul(1u32 << (attempts_made - 1).clamp(0, 20) as u32).min(MAX_BACKOFF)
        })
    }
}

/// Spawns the delivery worker; it stops (aborting attempts in flight, which stay pending) when
/// `shutdown` is cancelled.
pub fn spawn_worker(
    store: Store,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let worker = Worker { store, http, metrics, policy };
    tokio::spawn(async move { worker.run(shutdown).await })
}

#[derive(Clone)]
struct Worker {
    /// Where the queue lives.
    store: Store,
    /// Shared connection pool for webhook requests.
    http: reqwest::Client,
    /// `switchboard_webhook_deliveries_total`.
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.policy.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            }
            let room = WORKER_CONCURRENCY.saturating_sub(in_flight.len());
            if room == 0 {
                continue;
            }
            if let Err(e) = self.dispatch_due(room, &mut in_flight).await {
                tracing::warn!(error = %e, "webhook worker: cannot read the delivery queue");
            }
        }
        in_flight.shutdown().await;
        tracing::debug!("webhook worker stopped");
    }

    /// Claims up to `room` due deliveries and starts their attempts.
    async fn dispatch_due(&self, room: usize, in_flight: &mut JoinSet<()>) -> crate::store::Result<()> {
        let now = crate::store::now_text();
        for d in self.store.due_deliveries(&now, room as i64).await? {
            let Some(due) = d.next_retry_at.clone() else { continue };
            let Some(hook) = self.store.get_webhook(&d.agent_id).await? else {
                self.finish(&d, Err(SendError::Http("the agent has no webhook any more".into())), true).await;
                continue;
            };
            let timeout = Duration::from_secs(hook.timeout_s.max(1) as u64);
            let lease = crate::store::fmt_time(Utc::now() + timeout + LEASE_MARGIN);
            if !self.store.claim_delivery(&d.id, &due, &lease).await? {
                continue;
            }
            let worker = self.clone();
            in_flight.spawn(async move {
                let outcome = send_once(&worker.http, &hook, &d.payload, Some(&d.id), timeout).await;
                worker.finish(&d, outcome, false).await;
            });
        }
        Ok(())
    }

    /// Records an attempt's outcome: delivered, due again after the backoff, or failed.
    async fn finish(&self, d: &WebhookDelivery, outcome: Result<u16, SendError>, give_up: bool) {
        let attempts = d.attempt_count + 1;
        let now = Utc::now();
        let (rec, label) = match outcome {
            Ok(status) => (
                AttemptRecord {
                    status: DeliveryStatus::Delivered,
                    http_status: Some(i64::from(status)),
                    attempted_at: crate::store::fmt_time(now),
                    next_retry_at: None,
                    error_message: None,
                },
                "delivered",
            ),
            Err(e) => {
                let next = if give_up { None } else { self.policy.backoff(attempts) };
                let rec = AttemptRecord {
                    status: if next.is_some() { DeliveryStatus::Pending } else { DeliveryStatus::Failed },
                    http_status: e.http_status(),
                    attempted_at: crate::store::fmt_time(now),
                    // Stored times keep whole milliseconds (truncated), so round up: a retry is
                    // never due before its full backoff has passed.
                    next_retry_at: next.map(|d| crate::store::fmt_time(now + d + SUB_MILLI)),
                    error_message: Some(e.to_string()),
                };
                tracing::info!(delivery_id = %d.id, attempts, error = %e, retry = next.is_some(), "webhook delivery attempt failed");
                (rec, if next.is_some() { "retry" } else { "failed" })
            }
        };
        match self.store.record_attempt(&d.id, &rec).await {
            Ok(()) => self.metrics.webhook_delivery(label),
            Err(e) => {
                tracing::warn!(delivery_id = %d.id, error = %e, "cannot record a webhook delivery attempt")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_after_five_attempts() {
        let p = RetryPolicy { retry_base: Duration::from_secs(1), poll_interval: Duration::from_secs(1) };
        let delays: Vec<Option<u64>> = (1..=6).map(|n| p.backoff(n).map(|d| d.as_secs())).collect();
        assert_eq!(delays, vec![Some(1), Some(2), Some(4), Some(8), None, None]);
    }
}
