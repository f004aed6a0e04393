//! Binds the HTTP listener, owns start-up (database, migrations, API-key bootstrap) and the
//! two-phase shutdown: on the signal, readiness turns false and live work is given the drain
//! deadline to finish; then the listener stops accepting, in-flight requests complete, and
//! whatever is still open at the deadline is dropped.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::Engines;
use crate::store::{NewKey, Store, StoreError};

/// How long ended calls get to tear down (actors, a gateway request, the record) at shutdown.
const CALL_TEARDOWN: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A prepared server: database open and migrated, keys bootstrapped, router built.
pub struct Server {
    config: Config,
    state: AppState,
    /// The process metrics (the webhook worker counts its deliveries there).
    metrics: Arc<Metrics>,
}

impl Server {
    /// Opens the store, registers `config.api_key` if given, and creates a first key when none
    /// exists at all (returned so the caller can show it once).
    pub async fn prepare(config: Config) -> Result<(Self, Option<NewKey>), ServerError> {
        let store = Store::connect(&config.database_url).await?;
        if store.is_embedded() {
            let orphans = store.fail_orphaned_calls("server stopped while the call was live").await?;
            if orphans > 0 {
                tracing::warn!(orphans, "calls left in-progress by a previous run marked failed");
            }
        }
        if let Some(secret) = &config.api_key {
            let key = store.register_key(secret, Some("SWITCHBOARD_API_KEY")).await?;
            if key.revoked_at.is_some() {
                tracing::warn!(key_id = %key.id, "SWITCHBOARD_API_KEY names a revoked key; it will be refused");
            }
        }
        let created = if store.count_active_keys().await? == 0 {
            Some(store.create_key(Some("initial")).await?)
        } else {
            None
        };
        let (models_dir, providers) = (config.models_dir.clone(), config.providers.clone());
        let engines = tokio::task::spawn_blocking(move || Engines::load(&models_dir, &providers))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))?;
        let engines = Arc::new(engines);
        let metrics = Arc::new(Metrics::new());
        let state = AppState::new(Arc::new(config.clone()), store, engines, metrics.clone());
        Ok((Self { config, state, metrics }, created))
    }

    /// The HTTP state (tests use it to reach the store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains within `config.drain_timeout`.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        let app = api::router(self.state.clone(), self.config.request_timeout);
        let stop_accepting = CancellationToken::new();
        // Voice frames are small and must leave at once: no Nagle delay waiting for ACKs.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
            .into_future();
        let mut serve = tokio::spawn(serve);
        tracing::info!(%addr, "switchboard listening");
        // Webhook events queued in the database (pending ones from a previous run included).
        let stop_webhooks = CancellationToken::new();
        let webhooks = crate::webhook::spawn_worker(
            self.state.store().clone(),
            self.state.webhook_http().clone(),
            self.metrics.clone(),
            crate::webhook::RetryPolicy {
                retry_base: self.config.webhook_retry_base,
                poll_interval: self.config.webhook_poll_interval,
            },
            stop_webhooks.clone(),
        );

        tokio::select! {
            res = &mut serve => {
                // The server ended by itself: an accept-loop error.
                stop_webhooks.cancel();
                let _ = webhooks.await;
                self.state.store().close().await;
                return flatten(res);
            }
            () = shutdown => {}
        }

        let deadline = Instant::now() + self.config.drain_timeout;
        self.state.set_ready(false);
        tracing::info!(drain_timeout_s = self.config.drain_timeout.as_secs(), "draining: readiness off");
        // Phase 1: no new calls; live calls get until the deadline, then are ended cleanly.
        let live = self.state.registry().active();
        if live > 0 {
            tracing::info!(live, "draining: waiting for live calls");
        }
        let ended = self.state.registry().drain(deadline.saturating_duration_since(Instant::now())).await;
        if ended > 0 {
            tracing::warn!(ended, "drain deadline: ending the calls still live");
            // Ended calls stop their actors (≤ STOP_GRACE), may finish a gateway hang-up request,
            // and write their record; the store stays open until they have.
            if !self.state.registry().wait_idle(CALL_TEARDOWN).await {
                tracing::error!("calls still live after the drain; their records may stay in-progress");
            }
        }
        // Phase 2: stop accepting; in-flight requests complete; idle connections close.
        stop_accepting.cancel();
        let left = deadline.saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(left, &mut serve).await {
            Ok(res) => flatten(res),
            Err(_) => {
                tracing::warn!("drain deadline passed; dropping the connections still open");
                serve.abort();
                Ok(())
            }
        };
        // Events still queued (or cut off mid-attempt) stay pending for the next run.
        stop_webhooks.cancel();
        let _ = webhooks.await;
        self.state.store().close().await;
        tracing::info!("switchboard stopped");
        result
    }
}

fn flatten(res: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServerError> {
    match res {
        Ok(r) => Ok(r?),
        Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a SIGTERM that arrives while the server is starting up (it already
/// answers requests from its own task) still drains instead of killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            match streams {
                (Ok(mut int), Ok(mut term)) => tokio::select! {
                    _ = int.recv() => tracing::info!("Ctrl-C received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                },
                (int, term) => {
                    let e = int.err().or(term.err()).map(|e| e.to_string()).unwrap_or_default();
                    tracing::error!(error = %e, "cannot listen for SIGINT/SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}
