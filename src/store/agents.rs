//! Agent rows: create, read, list, optimistic update, delete (detaching its numbers).

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::numbers::{PhoneNumber, NUMBER_COLUMNS};
use super::{new_id, now_text, parse_time, Result, Store, StoreError};
use crate::agent::{AgentConfig, AmbientSound, DenoisingMode, ModelTier, SttMode, VoiceMode};

/// A stored agent with its attached numbers.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    /// Bumped on every update; the optimistic-concurrency token.
    pub version: i64,
    pub config: AgentConfig,
    pub created_at: DateTime<Utc>,
    pub numbers: Vec<PhoneNumber>,
}

const AGENT_COLUMNS: &str = "id, version, name, description, voice_mode, enable_messaging, \
    model_tier, system_prompt, begin_message, voice, transfer_number, voicemail_message, stt_mode, \
    ambient_sound, denoising_mode, max_silence_ms, voice_speed, interruption_sensitivity, \
    enable_backchannel, language, created_at";

impl Store {
    pub async fn create_agent(&self, config: AgentConfig) -> Result<Agent> {
        let id = new_id("agt");
        let now = now_text();
        let c = &config;
        sqlx::query(
            "INSERT INTO agents (id, version, name, description, voice_mode, enable_messaging, \
             model_tier, system_prompt, begin_message, voice, transfer_number, voicemail_message, \
             stt_mode, ambient_sound, denoising_mode, max_silence_ms, voice_speed, \
             interruption_sensitivity, enable_backchannel, language, created_at, updated_at) \
             VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $20)",
        )
        .bind(&id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(c.voice_mode.as_str())
        .bind(i64::from(c.enable_messaging))
        .bind(c.model_tier.as_str())
        .bind(&c.system_prompt)
        .bind(&c.begin_message)
        .bind(&c.voice)
        .bind(&c.transfer_number)
        .bind(&c.voicemail_message)
        .bind(c.stt_mode.as_str())
        .bind(c.ambient_sound.as_str())
        .bind(c.denoising_mode.as_str())
        .bind(c.max_silence_ms)
        .bind(c.voice_speed)
        .bind(c.interruption_sensitivity)
        .bind(i64::from(c.enable_backchannel))
        .bind(&c.language)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(Agent { id, version: 1, config, created_at: parse_time(&now)?, numbers: Vec::new() })
    }

    pub async fn get_agent(&self, id: &str) -> Result<Agent> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "agent", id: id.to_string() })?;
        let mut agent = agent_from_row(&row)?;
        agent.numbers = self.numbers_of_agent(id).await?;
        Ok(agent)
    }

    /// Newest first. Returns the page and the total count.
    pub async fn list_agents(&self, limit: i64, offset: i64) -> Result<(Vec<Agent>, i64)> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents").fetch_one(&self.pool).await?;
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY created_at DESC, id DESC \
             LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let mut agents = rows.iter().map(agent_from_row).collect::<Result<Vec<_>>>()?;
        if !agents.is_empty() {
            // One query for the numbers of the whole page.
            let placeholders: Vec<String> = (1..=agents.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE agent_id IN ({}) \
                 ORDER BY created_at, id",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for a in &agents {
                q = q.bind(a.id.clone());
            }
            for row in q.fetch_all(&self.pool).await? {
                let n = PhoneNumber::from_row(&row)?;
                if let Some(a) = agents.iter_mut().find(|a| Some(&a.id) == n.agent_id.as_ref()) {
                    a.numbers.push(n);
                }
            }
        }
        Ok((agents, total))
    }

    /// Writes `config` if the row is still at `version`; `Stale` if someone else wrote first.
    pub async fn update_agent(&self, id: &str, version: i64, config: &AgentConfig) -> Result<Agent> {
        let c = config;
        let done = sqlx::query(
            "UPDATE agents SET version = version + 1, name = $3, description = $4, voice_mode = $5, \
             enable_messaging = $6, model_tier = $7, system_prompt = $8, begin_message = $9, \
             voice = $10, transfer_number = $11, voicemail_message = $12, stt_mode = $13, \
             ambient_sound = $14, denoising_mode = $15, max_silence_ms = $16, voice_speed = $17, \
             interruption_sensitivity = $18, enable_backchannel = $19, language = $20, \
             updated_at = $21 WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .bind(&c.name)
        .bind(&c.description)
        .bind(c.voice_mode.as_str())
        .bind(i64::from(c.enable_messaging))
        .bind(c.model_tier.as_str())
        .bind(&c.system_prompt)
        .bind(&c.begin_message)
        .bind(&c.voice)
        .bind(&c.transfer_number)
        .bind(&c.voicemail_message)
        .bind(c.stt_mode.as_str())
        .bind(c.ambient_sound.as_str())
        .bind(c.denoising_mode.as_str())
        .bind(c.max_silence_ms)
        .bind(c.voice_speed)
        .bind(c.interruption_sensitivity)
        .bind(i64::from(c.enable_backchannel))
        .bind(&c.language)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            // Either gone or changed underneath us.
            self.get_agent(id).await?;
            return Err(StoreError::Stale);
        }
        self.get_agent(id).await
    }

    /// Deletes the agent, detaches its numbers and removes its webhook and deliveries, in one
    /// transaction.
    pub async fn delete_agent(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let deleted_numbers = sqlx::query("UPDATE phone_numbers SET agent_id = NULL WHERE agent_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Its webhook and delivery history go with it (the foreign keys cascade too; explicit
        // deletes keep that true where cascades are off).
        sqlx::query("DELETE FROM webhook_deliveries WHERE agent_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM agent_webhooks WHERE agent_id = $1").bind(id).execute(&mut *tx).await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound { entity: "agent", id: id.to_string() });
        }
        tx.commit().await?;
        tracing::debug!(agent_id = id, detached = deleted_numbers.rows_affected(), "agent deleted");
        Ok(())
    }
}

fn agent_from_row(row: &AnyRow) -> Result<Agent> {
    let config = AgentConfig {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        voice_mode: wire_enum(row, "voice_mode", VoiceMode::parse)?,
        enable_messaging: row.try_get::<i64, _>("enable_messaging")? != 0,
        model_tier: wire_enum(row, "model_tier", ModelTier::parse)?,
        system_prompt: row.try_get("system_prompt")?,
        begin_message: row.try_get("begin_message")?,
        voice: row.try_get("voice")?,
        transfer_number: row.try_get("transfer_number")?,
        voicemail_message: row.try_get("voicemail_message")?,
        stt_mode: wire_enum(row, "stt_mode", SttMode::parse)?,
        ambient_sound: wire_enum(row, "ambient_sound", AmbientSound::parse)?,
        denoising_mode: wire_enum(row, "denoising_mode", DenoisingMode::parse)?,
        max_silence_ms: row.try_get("max_silence_ms")?,
        voice_speed: row.try_get("voice_speed")?,
        interruption_sensitivity: row.try_get("interruption_sensitivity")?,
        enable_backchannel: row.try_get::<i64, _>("enable_backchannel")? != 0,
        language: row.try_get("language")?,
    };
    Ok(Agent {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        config,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        numbers: Vec::new(),
    })
}

/// Decodes a text column holding a wire enum value.
fn wire_enum<T>(row: &AnyRow, col: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let v: String = row.try_get(col)?;
    parse(&v)
        .ok_or_else(|| StoreError::Database(sqlx::Error::Decode(format!("agents.{col} holds '{v}'").into())))
}
