//! Phone-number rows: register, read, list, patch, delete, attach to and detach from agents.
//! A number is unique per deployment; attaching checks ownership in the same statement.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    is_foreign_key_violation, is_unique_violation, new_id, now_text, parse_time, Result, Store, StoreError,
};

/// A registered E.164 line this deployment answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub id: String,
    pub phone_number: String,
    pub country: Option<String>,
    /// `active` for every registered number.
    pub status: String,
    /// `voice`: the line carries calls.
    pub number_type: String,
    pub agent_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A number change: absent = unchanged; for `agent_id` and `country`, `Some(None)` clears.
#[derive(Debug, Default, Clone)]
pub struct NumberPatch {
    pub phone_number: Option<String>,
    pub country: Option<Option<String>>,
    pub agent_id: Option<Option<String>>,
}

pub(super) const NUMBER_COLUMNS: &str =
    "id, phone_number, country, status, number_type, agent_id, created_at";

/// Status and type every registered number gets.
const STATUS_ACTIVE: &str = "active";
const TYPE_VOICE: &str = "voice";

impl PhoneNumber {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            phone_number: row.try_get("phone_number")?,
            country: row.try_get("country")?,
            status: row.try_get("status")?,
            number_type: row.try_get("number_type")?,
            agent_id: row.try_get("agent_id")?,
            created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        })
    }
}

fn duplicate(phone_number: &str) -> StoreError {
    StoreError::Conflict(format!("phoneNumber: {phone_number} is already registered"))
}

fn no_agent(agent_id: &str) -> StoreError {
    StoreError::NotFound { entity: "agent", id: agent_id.to_string() }
}

fn no_number(id: &str) -> StoreError {
    StoreError::NotFound { entity: "number", id: id.to_string() }
}

impl Store {
    pub async fn create_number(
        &self,
        phone_number: &str,
        country: Option<&str>,
        agent_id: Option<&str>,
    ) -> Result<PhoneNumber> {
        let id = new_id("num");
        let now = now_text();
        let res = sqlx::query(
            "INSERT INTO phone_numbers (id, phone_number, country, status, number_type, agent_id, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(phone_number)
        .bind(country)
        .bind(STATUS_ACTIVE)
        .bind(TYPE_VOICE)
        .bind(agent_id)
        .bind(&now)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => self.get_number(&id).await,
            Err(e) if is_unique_violation(&e) => Err(duplicate(phone_number)),
            Err(e) if is_foreign_key_violation(&e) => Err(no_agent(agent_id.unwrap_or_default())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_number(&self, id: &str) -> Result<PhoneNumber> {
        let row = sqlx::query(&format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_number(id))?;
        PhoneNumber::from_row(&row)
    }

    /// The number row for an E.164 string, if registered (incoming calls look it up).
    pub async fn find_number(&self, phone_number: &str) -> Result<Option<PhoneNumber>> {
        let row = sqlx::query(&format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE phone_number = $1"))
            .bind(phone_number)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(PhoneNumber::from_row).transpose()
    }

    /// Newest first. Returns the page and the total count.
    pub async fn list_numbers(&self, limit: i64, offset: i64) -> Result<(Vec<PhoneNumber>, i64)> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM phone_numbers").fetch_one(&self.pool).await?;
        let rows = sqlx::query(&format!(
            "SELECT {NUMBER_COLUMNS} FROM phone_numbers ORDER BY created_at DESC, id DESC \
             LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((rows.iter().map(PhoneNumber::from_row).collect::<Result<_>>()?, total))
    }

    pub(super) async fn numbers_of_agent(&self, agent_id: &str) -> Result<Vec<PhoneNumber>> {
        let rows = sqlx::query(&format!(
            "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE agent_id = $1 ORDER BY created_at, id"
        ))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(PhoneNumber::from_row).collect()
    }

    /// Applies the present fields in one statement.
    pub async fn update_number(&self, id: &str, patch: NumberPatch) -> Result<PhoneNumber> {
        let current = self.get_number(id).await?;
        let phone_number = patch.phone_number.unwrap_or(current.phone_number);
        let country = patch.country.unwrap_or(current.country);
        let agent_id = patch.agent_id.unwrap_or(current.agent_id);
        let res = sqlx::query(
            "UPDATE phone_numbers SET phone_number = $2, country = $3, agent_id = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(&phone_number)
        .bind(&country)
        .bind(&agent_id)
        .execute(&self.pool)
        .await;
        match res {
            Ok(r) if r.rows_affected() == 0 => Err(no_number(id)),
            Ok(_) => self.get_number(id).await,
            Err(e) if is_unique_violation(&e) => Err(duplicate(&phone_number)),
            Err(e) if is_foreign_key_violation(&e) => Err(no_agent(&agent_id.unwrap_or_default())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_number(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM phone_numbers WHERE id = $1").bind(id).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(no_number(id));
        }
        Ok(())
    }

    /// Attaches a free number (or one already on this agent: idempotent). A number on another
    /// agent is a conflict: detach it there first.
    pub async fn attach_number(&self, agent_id: &str, number_id: &str) -> Result<PhoneNumber> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE phone_numbers SET agent_id = $1 WHERE id = $2 AND (agent_id IS NULL OR agent_id = $1)",
        )
        .bind(agent_id)
        .bind(number_id)
        .execute(&mut *tx)
        .await;
        let updated = match res {
            Ok(r) => r.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => return Err(no_agent(agent_id)),
            Err(e) => return Err(e.into()),
        };
        let agent_exists = sqlx::query("SELECT id FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !agent_exists {
            return Err(no_agent(agent_id));
        }
        let row = sqlx::query(&format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE id = $1"))
            .bind(number_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| no_number(number_id))?;
        let number = PhoneNumber::from_row(&row)?;
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "numberId: {number_id} is attached to agent {}; detach it there first",
                number.agent_id.as_deref().unwrap_or("?")
            )));
        }
        tx.commit().await?;
        Ok(number)
    }

    /// Detaches a number from this agent; 404 when the agent, the number or the attachment is missing.
    pub async fn detach_number(&self, agent_id: &str, number_id: &str) -> Result<PhoneNumber> {
        let r = sqlx::query("UPDATE phone_numbers SET agent_id = NULL WHERE id = $1 AND agent_id = $2")
            .bind(number_id)
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            self.get_agent(agent_id).await?;
            self.get_number(number_id).await?;
            return Err(StoreError::NotFound {
                entity: "attachment",
                id: format!("{number_id} on agent {agent_id}"),
            });
        }
        self.get_number(number_id).await
    }
}
