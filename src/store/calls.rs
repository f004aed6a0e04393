//! Call records: created `ringing` with a one-time media token by an answer endpoint, or
//! `in-progress` by a media websocket authorised with an API key; ended exactly once.

use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::keys::hash_key;
use super::{fmt_time, new_id, now_text, parse_time, Result, Store, StoreError};

/// Call status (PROTOCOLS.md §1 Calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Ringing,
    InProgress,
    Completed,
    Failed,
    Busy,
    NoAnswer,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ringing, Self::InProgress, Self::Completed, Self::Failed, Self::Busy, Self::NoAnswer]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Ended calls never change again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Ringing | Self::InProgress)
    }
}

/// A stored call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub phone_number: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    pub status: CallStatus,
    /// The media protocol (`twilio`, `telnyx`, …) once a stream is attached.
    pub transport: Option<String>,
    /// The gateway's own call id (Twilio CallSid …), for REST call control.
    pub gateway_call_id: Option<String>,
    pub stream_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Placed with `disableRecording`: never recorded.
    pub disable_recording: bool,
    /// Per-call settings over the agent's (JSON: `initialGreeting`, `systemPrompt`, `variables`,
    /// `modelTier`), from `POST /v1/calls`.
    pub overrides: Option<String>,
}

/// Which calls [`Store::list_calls`] returns (all given conditions hold).
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub agent_id: Option<String>,
    pub status: Option<CallStatus>,
    /// `inbound`, `outbound` or `web`.
    pub direction: Option<String>,
    /// A fragment of the caller's or called number, the line, or the agent's name.
    pub search: Option<String>,
}

/// What is known of a call when it is created.
#[derive(Debug, Clone, Default)]
pub struct NewCall {
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub phone_number: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    pub transport: Option<String>,
    pub gateway_call_id: Option<String>,
    pub stream_id: Option<String>,
    pub disable_recording: bool,
    /// JSON, see [`Call::overrides`].
    pub overrides: Option<String>,
}

const CALL_COLUMNS: &str = "id, agent_id, agent_name, phone_number_id, phone_number, from_number, \
    to_number, direction, status, transport, gateway_call_id, stream_id, started_at, ended_at, \
    end_reason, created_at, disable_recording, overrides";

/// Prefix of media tokens, so a token is never mistaken for an API key.
pub const MEDIA_TOKEN_PREFIX: &str = "mt_";

fn call_from_row(row: &AnyRow) -> Result<Call> {
    let status: String = row.try_get("status")?;
    let time = |col: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<String>, _>(col)?.map(|t| parse_time(&t)).transpose()
    };
    Ok(Call {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        agent_name: row.try_get("agent_name")?,
        phone_number_id: row.try_get("phone_number_id")?,
        phone_number: row.try_get("phone_number")?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        direction: row.try_get("direction")?,
        status: CallStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(format!("calls.status holds '{status}'").into()))
        })?,
        transport: row.try_get("transport")?,
        gateway_call_id: row.try_get("gateway_call_id")?,
        stream_id: row.try_get("stream_id")?,
        started_at: time("started_at")?,
        ended_at: time("ended_at")?,
        end_reason: row.try_get("end_reason")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        disable_recording: row.try_get::<i64, _>("disable_recording")? != 0,
        overrides: row.try_get("overrides")?,
    })
}

impl Store {
    async fn insert_call(
        &self,
        c: &NewCall,
        status: CallStatus,
        token: Option<(&str, &str)>,
    ) -> Result<String> {
        let id = new_id("call");
        let now = now_text();
        let started = (status == CallStatus::InProgress).then_some(now.as_str());
        sqlx::query(
            "INSERT INTO calls (id, agent_id, agent_name, phone_number_id, phone_number, from_number, \
             to_number, direction, status, transport, gateway_call_id, stream_id, media_token_hash, \
             media_token_expires_at, started_at, created_at, disable_recording, overrides) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&id)
        .bind(&c.agent_id)
        .bind(&c.agent_name)
        .bind(&c.phone_number_id)
        .bind(&c.phone_number)
        .bind(&c.from_number)
        .bind(&c.to_number)
        .bind(&c.direction)
        .bind(status.as_str())
        .bind(&c.transport)
        .bind(&c.gateway_call_id)
        .bind(&c.stream_id)
        .bind(token.map(|t| t.0))
        .bind(token.map(|t| t.1))
        .bind(started)
        .bind(&now)
        .bind(i64::from(c.disable_recording))
        .bind(&c.overrides)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Creates a `ringing` call and a one-time media token for its stream, valid for `ttl`.
    /// Returns the call and the token (shown to the gateway once, stored hashed).
    pub async fn create_ringing_call(&self, new: &NewCall, ttl: Duration) -> Result<(Call, String)> {
        let token = format!("{MEDIA_TOKEN_PREFIX}{}", super::keys::random_chars(40));
        let expires = fmt_time(Utc::now() + ttl);
        let id = self.insert_call(new, CallStatus::Ringing, Some((&hash_key(&token), &expires))).await?;
        Ok((self.get_call(&id).await?, token))
    }

    /// Creates a call that is live at once (stream authorised by an API key).
    pub async fn create_live_call(&self, new: &NewCall) -> Result<Call> {
        let id = self.insert_call(new, CallStatus::InProgress, None).await?;
        self.get_call(&id).await
    }

    /// Redeems a media token: the matching `ringing`, unexpired call turns `in-progress` with the
    /// stream's details, and the token is spent. `None` when no such call exists (wrong, expired
    /// or already used token).
    pub async fn claim_call(
        &self,
        token: &str,
        transport: &str,
        stream_id: &str,
        gateway_call_id: Option<&str>,
    ) -> Result<Option<Call>> {
        let hash = hash_key(token);
        let Some(id) = sqlx::query_scalar::<_, String>("SELECT id FROM calls WHERE media_token_hash = $1")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        // The guarded update is the atomic redemption: of two racing claims only one matches.
        let claimed = sqlx::query(
            "UPDATE calls SET status = 'in-progress', started_at = $3, transport = $4, stream_id = $5, \
             gateway_call_id = COALESCE($6, gateway_call_id), media_token_hash = NULL \
             WHERE id = $1 AND media_token_hash = $2 AND status = 'ringing' AND media_token_expires_at > $3",
        )
        .bind(&id)
        .bind(&hash)
        .bind(now_text())
        .bind(transport)
        .bind(stream_id)
        .bind(gateway_call_id)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(self.get_call(&id).await?))
    }

    /// Redeems a ringing call by the gateway's own call id (a Twilio stream authorised by its
    /// signed upgrade carries no token): the same one-time transition as [`Store::claim_call`].
    pub async fn claim_call_by_gateway_id(
        &self,
        transport: &str,
        gateway_call_id: &str,
        stream_id: &str,
    ) -> Result<Option<Call>> {
        let now = now_text();
        let Some(id) = sqlx::query_scalar::<_, String>(
            "SELECT id FROM calls WHERE gateway_call_id = $1 AND transport = $2 AND status = 'ringing' \
             AND media_token_expires_at > $3",
        )
        .bind(gateway_call_id)
        .bind(transport)
        .bind(&now)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let claimed = sqlx::query(
            "UPDATE calls SET status = 'in-progress', started_at = $2, stream_id = $3, media_token_hash = NULL \
             WHERE id = $1 AND status = 'ringing'",
        )
        .bind(&id)
        .bind(&now)
        .bind(stream_id)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(self.get_call(&id).await?))
    }

    /// The call a gateway knows by `gateway_call_id` (its status callbacks name it so).
    pub async fn find_call_by_gateway_id(
        &self,
        transport: &str,
        gateway_call_id: &str,
    ) -> Result<Option<Call>> {
        let row = sqlx::query(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE gateway_call_id = $1 AND transport = $2 \
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(gateway_call_id)
        .bind(transport)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// Records the gateway's id for a call it has accepted to place.
    pub async fn set_gateway_call_id(&self, id: &str, gateway_call_id: &str) -> Result<()> {
        sqlx::query("UPDATE calls SET gateway_call_id = $2 WHERE id = $1")
            .bind(id)
            .bind(gateway_call_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Calls matching `filter`, newest first, and how many match in all.
    pub async fn list_calls(&self, filter: &CallFilter, limit: i64, offset: i64) -> Result<(Vec<Call>, i64)> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut add = |sql: &str, value: String, binds: &mut Vec<String>| {
            binds.push(value);
            conditions.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(a) = &filter.agent_id {
            add("agent_id = ?", a.clone(), &mut binds);
        }
        if let Some(st) = filter.status {
            add("status = ?", st.as_str().to_string(), &mut binds);
        }
        if let Some(d) = &filter.direction {
            add("direction = ?", d.clone(), &mut binds);
        }
        if let Some(q) = filter.search.as_deref().filter(|q| !q.is_empty()) {
            // A number or name fragment: from, to, the line called or the agent's name.
            let like = format!("%{}%", q.replace(['\\', '%', '_'], ""));
            binds.push(like);
            let n = binds.len();
            conditions.push(format!(
                "(from_number LIKE ${n} OR to_number LIKE ${n} OR phone_number LIKE ${n} OR agent_name LIKE ${n})"
            ));
        }
        let clause =
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let count_sql = format!("SELECT COUNT(*) FROM calls {clause}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for b in &binds {
            count = count.bind(b);
        }
        let total = count.fetch_one(&self.pool).await?;
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls {clause} ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok((rows.iter().map(call_from_row).collect::<Result<_>>()?, total))
    }

    pub async fn get_call(&self, id: &str) -> Result<Call> {
        let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "call", id: id.to_string() })?;
        call_from_row(&row)
    }

    /// Marks every `in-progress` call `failed` with `reason`. Only for the embedded database at
    /// start-up: one node owns all its calls, so a call still live in the file was cut by a crash
    /// or kill. (A shared PostgreSQL needs per-node ownership before it can do the same.)
    pub async fn fail_orphaned_calls(&self, reason: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE calls SET status = 'failed', ended_at = $1, end_reason = $2 WHERE status = 'in-progress'",
        )
        .bind(now_text())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Ends a live or ringing call once; a call already ended keeps its first outcome.
    /// Returns whether this call changed it.
    pub async fn end_call(&self, id: &str, status: CallStatus, reason: &str) -> Result<bool> {
        debug_assert!(status.is_final());
        let r = sqlx::query(
            "UPDATE calls SET status = $2, ended_at = $3, end_reason = $4, media_token_hash = NULL \
             WHERE id = $1 AND status IN ('ringing', 'in-progress')",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(now_text())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
