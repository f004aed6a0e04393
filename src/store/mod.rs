//! The SQL store: agents, phone numbers, API keys, calls and webhooks behind one [`Store`] boundary.
//!
//! Built on sqlx's `Any` driver with portable SQL (`$n` parameters, TEXT timestamps, BOOLEAN,
//! BIGINT, DOUBLE PRECISION) so the same migrations and queries serve the embedded SQLite file and,
//! later, PostgreSQL. Every multi-statement write runs in one transaction: a failed request leaves
//! nothing half-written. Concurrent agent updates are optimistic (a `version` column).

mod agents;
mod calls;
mod keys;
mod messages;
mod numbers;
mod turns;
mod webhooks;

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use agents::Agent;
pub use calls::{Call, CallFilter, CallStatus, NewCall, MEDIA_TOKEN_PREFIX};
pub use keys::{ApiKey, NewKey};
pub use messages::CallMessage;
pub use numbers::{NumberPatch, PhoneNumber};
pub use turns::{CallEvent, CallTurn, NewTurn};
pub use webhooks::{AttemptRecord, DeliveryStatus, NewDelivery, NewWebhook, Webhook, WebhookDelivery};

/// Store failures. `NotFound` and `Conflict` are expected outcomes the API maps to 404 / 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named entity (`"agent"`, `"number"`, `"key"`) with that id does not exist.
    #[error("{entity} '{id}' not found")]
    NotFound { entity: &'static str, id: String },
    /// The write would break a uniqueness or ownership rule; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// An optimistic update lost a race with another writer; retry from a fresh read.
    #[error("the row changed while it was being updated")]
    Stale,
    #[error("database URL '{url}' is not supported (use sqlite:// or postgres://): {source}")]
    BadUrl { url: String, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the database; cheap to clone (a connection pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The embedded SQLite file: one node owns every live call in it.
    embedded: bool,
}

/// The embedded migrations (`migrations/`), applied on every start.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Connects (creating a SQLite file if needed), enables WAL and foreign keys on SQLite, and
    /// applies pending migrations.
    pub async fn connect(database_url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = normalise_url(database_url);
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|source| StoreError::BadUrl { url: database_url.to_string(), source })?;
        let is_sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 16 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        if is_sqlite {
            // WAL is a property of the database file: set once, kept across connections.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, embedded: is_sqlite })
    }

    /// Whether this is the embedded single-node database (SQLite).
    pub fn is_embedded(&self) -> bool {
        self.embedded
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A cheap round trip, used by readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// `sqlite://file.db` → create the file when missing (`mode=rwc`) unless the URL says otherwise.
fn normalise_url(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    }
}

/// The current time as stored: RFC 3339, UTC, milliseconds.
pub(crate) fn now_text() -> String {
    fmt_time(Utc::now())
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

/// A new opaque id: a prefix and a ULID (26 characters), monotonic within this process so ids
/// made in the same millisecond still sort in creation order.
pub(crate) fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    // `Ulid::default()` is the nil id, so fall back explicitly to a fresh random one.
    let ulid = match GENERATOR.lock().ok().and_then(|mut g| g.generate().ok()) {
        Some(u) => u,
        None => ulid::Ulid::new(),
    };
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// Is this a unique-constraint violation (mapped to 409)?
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Is this a foreign-key violation (a referenced row is missing)?
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file_unless_told_otherwise() {
        assert_eq!(normalise_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(normalise_url("sqlite://a.db?x=1"), "sqlite://a.db?x=1&mode=rwc");
        assert_eq!(normalise_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
        assert_eq!(normalise_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn ids_are_prefixed_monotonic_and_time_text_round_trips() {
        let id = new_id("agt");
        assert!(id.starts_with("agt_") && id.len() == 30, "{id}");
        let ids: Vec<String> = (0..1000).map(|_| new_id("x")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort in creation order");
        let t = now_text();
        assert_eq!(fmt_time(parse_time(&t).unwrap()), t);
    }
}
