//! Text messages sent during calls (the agent's `send_message` tool).

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_text, parse_time, Result, Store};

/// One message and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMessage {
    pub id: String,
    pub call_id: String,
    pub to_number: String,
    pub from_number: String,
    pub body: String,
    /// `queued`, `sent`, `failed` or `not-configured`.
    pub status: String,
    /// The messaging provider (`twilio`), once asked.
    pub provider: Option<String>,
    /// The provider's id for the message (Twilio `sid`).
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn message_from_row(row: &AnyRow) -> Result<CallMessage> {
    Ok(CallMessage {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        to_number: row.try_get("to_number")?,
        from_number: row.try_get("from_number")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        provider: row.try_get("provider")?,
        provider_id: row.try_get("provider_id")?,
        error: row.try_get("error")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

impl Store {
    /// Records a message about to be sent (status `queued`); returns its id.
    pub async fn add_call_message(&self, call_id: &str, to: &str, from: &str, body: &str) -> Result<String> {
        let id = new_id("msg");
        sqlx::query(
            "INSERT INTO call_messages (id, call_id, to_number, from_number, body, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        )
        .bind(&id)
        .bind(call_id)
        .bind(to)
        .bind(from)
        .bind(body)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// What the provider answered.
    pub async fn set_message_result(
        &self,
        id: &str,
        status: &str,
        provider: Option<&str>,
        provider_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE call_messages SET status = $2, provider = $3, provider_id = $4, error = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(provider)
        .bind(provider_id)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A call's messages, oldest first.
    pub async fn list_call_messages(&self, call_id: &str) -> Result<Vec<CallMessage>> {
        let rows = sqlx::query(
            "SELECT id, call_id, to_number, from_number, body, status, provider, provider_id, error, created_at \
             FROM call_messages WHERE call_id = $1 ORDER BY created_at, id",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }
}
