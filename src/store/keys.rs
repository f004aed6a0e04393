//! API keys, stored hashed: the clear key is shown once at creation and never kept.
//!
//! Keys are 40 random base62 characters behind a `sb_live_` prefix (≈238 bits), so a plain SHA-256
//! is a sound at-rest hash (no password stretching needed for random secrets). Lookups go by hash.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_text, Result, Store, StoreError};

/// The visible prefix of every key.
pub const KEY_PREFIX: &str = "sb_live_";
const KEY_RANDOM_CHARS: usize = 40;
/// How much of the key (prefix included) is stored in clear to tell keys apart in listings.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 4;

/// A stored key (never the secret itself).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: Option<String>,
    /// The first characters of the key, e.g. `sb_live_Ab3x`, for humans to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A freshly created key: the record plus the secret, to be shown exactly once.
#[derive(Debug)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

/// SHA-256 of the key, hex.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `n` random base62 characters from the OS-seeded thread RNG.
pub(crate) fn random_chars(n: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

fn generate_secret() -> String {
    format!("{KEY_PREFIX}{}", random_chars(KEY_RANDOM_CHARS))
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("key_prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Creates a new random key.
    pub async fn create_key(&self, name: Option<&str>) -> Result<NewKey> {
        let secret = generate_secret();
        let key = self.insert_key(&secret, name).await?;
        Ok(NewKey { key, secret })
    }

    /// Registers a key given in clear (e.g. `SWITCHBOARD_API_KEY`). Idempotent: an existing key
    /// with the same secret is returned as is (a revoked one stays revoked).
    pub async fn register_key(&self, secret: &str, name: Option<&str>) -> Result<ApiKey> {
        if let Some(k) = self.key_by_hash(&hash_key(secret)).await? {
            return Ok(k);
        }
        match self.insert_key(secret, name).await {
            // Lost a race with another registration of the same key: that one stands.
            Err(StoreError::Database(e)) if super::is_unique_violation(&e) => self
                .key_by_hash(&hash_key(secret))
                .await?
                .ok_or_else(|| StoreError::Conflict("api key registration raced".into())),
            other => other,
        }
    }

    async fn insert_key(&self, secret: &str, name: Option<&str>) -> Result<ApiKey> {
        let id = new_id("key");
        let prefix: String = secret.chars().take(SHOWN_CHARS).collect();
        let now = now_text();
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(&prefix)
        .bind(hash_key(secret))
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(ApiKey { id, name: name.map(str::to_string), prefix, created_at: now, revoked_at: None })
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, key_prefix, created_at, revoked_at FROM api_keys WHERE key_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// The active (not revoked) key matching this secret, if any.
    pub async fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        Ok(self.key_by_hash(&hash_key(secret)).await?.filter(|k| k.revoked_at.is_none()))
    }

    pub async fn count_active_keys(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, key_prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key; revoking twice is harmless. Unknown id → `NotFound`.
    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let r = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
            .bind(id)
            .bind(now_text())
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound { entity: "key", id: id.to_string() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hash_to_hex() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        let h = hash_key(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a[KEY_PREFIX.len()..]));
    }
}
