//! Agent webhooks (one per agent) and their delivery records, including the durable queue of
//! event deliveries the webhook worker drains ([`crate::webhook::deliver`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{is_foreign_key_violation, new_id, now_text, Result, Store, StoreError};

/// A stored webhook. `secret` is kept in clear: it signs every request.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub agent_id: String,
    pub url: String,
    pub secret: String,
    /// `active` (the only status so far).
    pub status: String,
    /// How many history items go in `recentHistory` of a live turn.
    pub context_limit: i64,
    /// Per-request deadline, seconds.
    pub timeout_s: i64,
    pub created_at: String,
}

/// What a new (or replacing) webhook is made of; id, status and time are the store's.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    pub context_limit: i64,
    pub timeout_s: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Queued; the worker sends it once `next_retry_at` has passed.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up (or a live turn/test that did not get a 2xx answer).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|v| v.as_str() == s)
    }
}

/// One delivery: an event and the outcome of its attempts so far.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: String,
    pub agent_id: String,
    pub call_id: Option<String>,
    /// `agent.message`, `agent.call_ended`, `agent.test`.
    pub event_type: String,
    /// The exact JSON body sent.
    pub payload: String,
    pub status: DeliveryStatus,
    /// The HTTP status of the last attempt, if one got an answer.
    pub http_status: Option<i64>,
    pub attempt_count: i64,
    pub last_attempt_at: Option<String>,
    /// When a pending delivery is next due (RFC 3339); `None` once final.
    pub next_retry_at: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
}

/// A delivery to record: queued (`Pending`, no attempt yet, due at `next_retry_at`) or already
/// attempted once (`Delivered`/`Failed`, a live turn or a test).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub agent_id: String,
    pub call_id: Option<String>,
    pub event_type: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub http_status: Option<i64>,
    pub attempt_count: i64,
    pub last_attempt_at: Option<String>,
    pub next_retry_at: Option<String>,
    pub error_message: Option<String>,
}

/// The outcome of one attempt of a queued delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub status: DeliveryStatus,
    pub http_status: Option<i64>,
    pub attempted_at: String,
    pub next_retry_at: Option<String>,
    pub error_message: Option<String>,
}

const WEBHOOK_COLUMNS: &str = "id, agent_id, url, secret, status, context_limit, timeout_s, created_at";
const DELIVERY_COLUMNS: &str = "id, agent_id, call_id, event_type, payload, status, http_status, \
    attempt_count, last_attempt_at, next_retry_at, error_message, created_at";

impl Store {
    /// Whether an agent with this id exists (a cheap check for the webhook routes).
    pub async fn agent_exists(&self, agent_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Creates the agent's webhook, replacing any previous one, in one transaction.
    pub async fn put_webhook(&self, agent_id: &str, new: NewWebhook) -> Result<Webhook> {
        let hook = Webhook {
            id: new_id("whk"),
            agent_id: agent_id.to_string(),
            url: new.url,
            secret: new.secret,
            status: "active".to_string(),
            context_limit: new.context_limit,
            timeout_s: new.timeout_s,
            created_at: now_text(),
        };
        let not_found = || StoreError::NotFound { entity: "agent", id: agent_id.to_string() };
        let mut tx = self.pool.begin().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_one(&mut *tx)
            .await?;
        if n == 0 {
            tx.rollback().await?;
            return Err(not_found());
        }
        sqlx::query("DELETE FROM agent_webhooks WHERE agent_id = $1")
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO agent_webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&hook.id)
        .bind(&hook.agent_id)
        .bind(&hook.url)
        .bind(&hook.secret)
        .bind(&hook.status)
        .bind(hook.context_limit)
        .bind(hook.timeout_s)
        .bind(&hook.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_foreign_key_violation(&e) { not_found() } else { e.into() })?;
        tx.commit().await?;
        Ok(hook)
    }

    /// The agent's webhook, if it has one.
    pub async fn get_webhook(&self, agent_id: &str) -> Result<Option<Webhook>> {
        let row = sqlx::query(&format!("SELECT {WEBHOOK_COLUMNS} FROM agent_webhooks WHERE agent_id = $1"))
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Removes the agent's webhook; false when it had none. Its delivery history stays.
    pub async fn delete_webhook(&self, agent_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agent_webhooks WHERE agent_id = $1")
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a delivery (queued or already attempted).
    pub async fn insert_delivery(&self, new: NewDelivery) -> Result<WebhookDelivery> {
        let d = WebhookDelivery {
            id: new_id("whd"),
            agent_id: new.agent_id,
            call_id: new.call_id,
            event_type: new.event_type,
            payload: new.payload,
            status: new.status,
            http_status: new.http_status,
            attempt_count: new.attempt_count,
            last_attempt_at: new.last_attempt_at,
            next_retry_at: new.next_retry_at,
            error_message: new.error_message,
            created_at: now_text(),
        };
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&d.id)
        .bind(&d.agent_id)
        .bind(&d.call_id)
        .bind(&d.event_type)
        .bind(&d.payload)
        .bind(d.status.as_str())
        .bind(d.http_status)
        .bind(d.attempt_count)
        .bind(&d.last_attempt_at)
        .bind(&d.next_retry_at)
        .bind(&d.error_message)
        .bind(&d.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound { entity: "agent", id: d.agent_id.clone() }
            } else {
                e.into()
            }
        })?;
        Ok(d)
    }

    pub async fn get_delivery(&self, id: &str) -> Result<WebhookDelivery> {
        let row = sqlx::query(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "delivery", id: id.to_string() })?;
        delivery_from_row(&row)
    }

    /// The agent's deliveries, newest first, and their total count.
    pub async fn list_deliveries(
        &self,
        agent_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<WebhookDelivery>, i64)> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE agent_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(agent_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((rows.iter().map(delivery_from_row).collect::<Result<_>>()?, total))
    }

    /// Pending deliveries due at `now` (RFC 3339, as stored), the longest-waiting first.
    pub async fn due_deliveries(&self, now: &str, limit: i64) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE status = 'pending' AND next_retry_at <= $1 ORDER BY next_retry_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Takes a due delivery for one attempt by moving its `next_retry_at` from `due` to
    /// `lease_until`; false when another worker took it first. A worker that dies mid-attempt
    /// leaves the row pending, due again when the lease runs out.
    pub async fn claim_delivery(&self, id: &str, due: &str, lease_until: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_retry_at = $3 \
             WHERE id = $1 AND status = 'pending' AND next_retry_at = $2",
        )
        .bind(id)
        .bind(due)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Writes the outcome of one attempt of a queued delivery (counting the attempt).
    pub async fn record_attempt(&self, id: &str, rec: &AttemptRecord) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, http_status = $3, \
             attempt_count = attempt_count + 1, last_attempt_at = $4, next_retry_at = $5, \
             error_message = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(rec.status.as_str())
        .bind(rec.http_status)
        .bind(&rec.attempted_at)
        .bind(&rec.next_retry_at)
        .bind(&rec.error_message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn webhook_from_row(row: &AnyRow) -> Result<Webhook> {
    Ok(Webhook {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        status: row.try_get("status")?,
        context_limit: row.try_get("context_limit")?,
        timeout_s: row.try_get("timeout_s")?,
        created_at: row.try_get("created_at")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<WebhookDelivery> {
    let status: String = row.try_get("status")?;
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        call_id: row.try_get("call_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("webhook_deliveries.status holds '{status}'").into(),
            ))
        })?,
        http_status: row.try_get("http_status")?,
        attempt_count: row.try_get("attempt_count")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        next_retry_at: row.try_get("next_retry_at")?,
        error_message: row.try_get("error_message")?,
        created_at: row.try_get("created_at")?,
    })
}
