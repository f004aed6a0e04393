//! A call's caller turns (transcripts) and timeline events, written as they happen.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_text, parse_time, Result, Store};

/// One caller turn and, once answered, the agent's response.
#[derive(Debug, Clone, PartialEq)]
pub struct CallTurn {
    pub id: String,
    pub call_id: String,
    /// Order within the call, from 1.
    pub seq: i64,
    /// What the caller said (or the DTMF keys pressed).
    pub transcript: String,
    pub response: Option<String>,
    /// `speech` or `dtmf`.
    pub source: String,
    pub confidence: f64,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub created_at: DateTime<Utc>,
}

/// A caller turn to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTurn {
    pub seq: i64,
    pub transcript: String,
    pub source: &'static str,
    pub confidence: f64,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub seq: i64,
    /// `speech_started`, `speech_ended`, `turn`, `barge_in`, `false_interruption`, …
    pub kind: String,
    pub at_ms: i64,
    /// Free-form JSON detail.
    pub detail: Option<String>,
}

fn turn_from_row(row: &AnyRow) -> Result<CallTurn> {
    Ok(CallTurn {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        seq: row.try_get("seq")?,
        transcript: row.try_get("transcript")?,
        response: row.try_get("response")?,
        source: row.try_get("source")?,
        confidence: row.try_get("confidence")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

impl Store {
    /// Records a completed caller turn; returns it as stored.
    pub async fn add_call_turn(&self, call_id: &str, t: &NewTurn) -> Result<CallTurn> {
        let id = new_id("turn");
        let created_at = now_text();
        sqlx::query(
            "INSERT INTO call_transcripts (id, call_id, seq, transcript, response, source, confidence, \
             started_ms, ended_ms, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(call_id)
        .bind(t.seq)
        .bind(&t.transcript)
        .bind(t.source)
        .bind(t.confidence)
        .bind(t.started_ms)
        .bind(t.ended_ms)
        .bind(&created_at)
        .execute(&self.pool)
        .await?;
        Ok(CallTurn {
            id,
            call_id: call_id.to_string(),
            seq: t.seq,
            transcript: t.transcript.clone(),
            response: None,
            source: t.source.to_string(),
            confidence: t.confidence,
            started_ms: t.started_ms,
            ended_ms: t.ended_ms,
            created_at: parse_time(&created_at)?,
        })
    }

    /// Sets (or extends) the agent's response to a turn.
    pub async fn set_turn_response(&self, turn_id: &str, response: &str) -> Result<()> {
        sqlx::query("UPDATE call_transcripts SET response = $2 WHERE id = $1")
            .bind(turn_id)
            .bind(response)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A call's turns in order.
    pub async fn list_call_turns(&self, call_id: &str) -> Result<Vec<CallTurn>> {
        let rows = sqlx::query(
            "SELECT id, call_id, seq, transcript, response, source, confidence, started_ms, ended_ms, \
             created_at FROM call_transcripts WHERE call_id = $1 ORDER BY seq",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(turn_from_row).collect()
    }

    pub async fn add_call_event(&self, call_id: &str, e: &CallEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO call_events (id, call_id, seq, kind, at_ms, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("evt"))
        .bind(call_id)
        .bind(e.seq)
        .bind(&e.kind)
        .bind(e.at_ms)
        .bind(&e.detail)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A call's timeline in order.
    pub async fn list_call_events(&self, call_id: &str) -> Result<Vec<CallEvent>> {
        let rows =
            sqlx::query("SELECT seq, kind, at_ms, detail FROM call_events WHERE call_id = $1 ORDER BY seq")
                .bind(call_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(CallEvent {
                    seq: r.try_get("seq")?,
                    kind: r.try_get("kind")?,
                    at_ms: r.try_get("at_ms")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewCall;

    #[tokio::test]
    async fn turns_and_events_are_recorded_in_order_and_go_with_their_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display())).await.unwrap();
        let call =
            store.create_live_call(&NewCall { direction: "web".into(), ..NewCall::default() }).await.unwrap();
        for seq in [2, 1] {
            let t = NewTurn {
                seq,
                transcript: format!("turn {seq}"),
                source: "speech",
                confidence: 0.5,
                started_ms: seq * 1000,
                ended_ms: seq * 1000 + 500,
            };
            store.add_call_turn(&call.id, &t).await.unwrap();
        }
        let turns = store.list_call_turns(&call.id).await.unwrap();
        assert_eq!(turns.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(turns[0].transcript, "turn 1");
        assert_eq!(turns[0].response, None);
        store.set_turn_response(&turns[0].id, "Hello!").await.unwrap();
        assert_eq!(store.list_call_turns(&call.id).await.unwrap()[0].response.as_deref(), Some("Hello!"));

        // The same turn number twice is refused: nothing half-written.
        let dup = NewTurn {
            seq: 1,
            transcript: "again".into(),
            source: "dtmf",
            confidence: 1.0,
            started_ms: 0,
            ended_ms: 0,
        };
        assert!(store.add_call_turn(&call.id, &dup).await.is_err());
        assert_eq!(store.list_call_turns(&call.id).await.unwrap().len(), 2);

        let e = CallEvent { seq: 1, kind: "barge_in".into(), at_ms: 1300, detail: Some("{}".into()) };
        store.add_call_event(&call.id, &e).await.unwrap();
        assert_eq!(store.list_call_events(&call.id).await.unwrap(), vec![e]);
        assert!(store.list_call_events("call_missing").await.unwrap().is_empty());
    }
}
