//! The REST API (AgentPhone-compatible) and the operator endpoints, on axum.
//!
//! Owns routing, authentication (`Authorization: Bearer <key>`), the JSON body and pagination
//! rules shared by every endpoint, request ids, request logging and HTTP metrics. Errors leave as
//! one [`ApiError`] type: `{"detail": "..."}` naming the field; internal causes go to the log.

mod agents;
mod calls;
mod error;
mod media;
mod numbers;
mod openapi;
mod ops;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use error::ApiError;
pub use openapi::ApiDoc;

use crate::call::registry::CallRegistry;
use crate::call::session::SessionContext;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::transport::control::GatewayControl;
use crate::voices::VoiceCatalogue;

/// Largest accepted request body (a 32 000-character system prompt fits many times over).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Pagination bounds (PROTOCOLS.md §1).
pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 100;

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The resolved configuration.
    config: Arc<Config>,
    /// Agents, numbers, calls and keys.
    store: Store,
    /// Live calls of this node (admission, ending, drain).
    registry: Arc<CallRegistry>,
    /// Gateway REST call control.
    control: Arc<GatewayControl>,
    /// The voices `voice` is validated against.
    voices: VoiceCatalogue,
    /// Process-wide metrics.
    metrics: Arc<Metrics>,
    /// Speech engines shared by every call.
    engines: Arc<crate::providers::Engines>,
    /// False while draining (or later: at capacity); `/readyz` answers 503 then.
    ready: AtomicBool,
    /// Connection pool for webhook requests (live turns, tests, the event worker).
    webhook_http: reqwest::Client,
    /// The recording writer, when calls are recorded.
    recordings: Option<crate::call::recording::RecordingWriter>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        engines: Arc<crate::providers::Engines>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let voices = engines.voices.clone();
        let recordings = if config.record_calls {
            crate::call::recording::RecordingWriter::start(&config.recordings_dir)
                .map_err(|e| {
                    tracing::error!(dir = %config.recordings_dir.display(), error = %e,
                        "cannot write recordings there; calls are not recorded")
                })
                .ok()
        } else {
            None
        };
        let registry = CallRegistry::new(config.max_calls, metrics.clone());
        let control =
            Arc::new(GatewayControl::new(config.gateways.clone()).with_public_url(config.public_url.clone()));
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                registry,
                control,
                voices,
                metrics,
                engines,
                ready: AtomicBool::new(true),
                webhook_http: crate::webhook::http_client(),
                recordings,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn registry(&self) -> &Arc<CallRegistry> {
        &self.inner.registry
    }

    /// What a media session needs.
    pub fn session_context(&self) -> SessionContext {
        SessionContext {
            store: self.inner.store.clone(),
            registry: self.inner.registry.clone(),
            metrics: self.inner.metrics.clone(),
            control: self.inner.control.clone(),
            start_timeout: self.inner.config.media_start_timeout,
            engines: self.inner.engines.clone(),
            webhook_http: self.inner.webhook_http.clone(),
            recordings: self.inner.recordings.clone(),
        }
    }

    /// Gateway REST call control.
    pub fn control(&self) -> &GatewayControl {
        &self.inner.control
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn engines(&self) -> &crate::providers::Engines {
        &self.inner.engines
    }

    pub fn voices(&self) -> &VoiceCatalogue {
        &self.inner.voices
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The shared client for webhook requests.
    pub fn webhook_http(&self) -> &reqwest::Client {
        &self.inner.webhook_http
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }
}

/// The whole HTTP surface: `/v1/*` (authenticated), operator endpoints and `/openapi.json`.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let v1 = Router::new()
        .route("/agents", post(agents::create).get(agents::list))
        .route("/agents/voices", get(agents::voices))
        .route("/agents/languages", get(agents::languages))
        .route("/agents/{id}", get(agents::get).patch(agents::update).delete(agents::delete))
        .route("/agents/{id}/numbers", post(agents::attach_number))
        .route("/agents/{id}/numbers/{number_id}", axum::routing::delete(agents::detach_number))
        .route("/agents/{id}/calls", get(calls::of_agent))
        .route("/calls", get(calls::list).post(calls::create))
        .route("/calls/{id}", get(calls::get))
        .route("/calls/{id}/end", post(calls::end))
        .route("/calls/{id}/transcript", get(calls::transcript))
        .route("/calls/{id}/transcript/stream", get(calls::transcript_stream))
        .route("/calls/{id}/recording", get(calls::recording))
        .route("/numbers", post(numbers::create).get(numbers::list))
        .route("/numbers/{id}", get(numbers::get).patch(numbers::update).delete(numbers::delete))
        .merge(crate::webhook::api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // Added after the auth layer: media sockets authorise in their start message.
        .route("/media", get(media::native));

    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/twilio/media", get(media::twilio))
        .route("/telnyx/media", get(media::telnyx))
        .route("/vonage/media", get(media::vonage))
        .route("/plivo/media", get(media::plivo))
        .merge(
            Router::new()
                .merge(crate::transport::answer::routes())
                .merge(crate::transport::outbound::routes())
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::transport::signatures::check,
                )),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The request id of the request being served (from `x-request-id` or newly made).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Request id, one log line per request (method, route, status, latency; never headers or
/// bodies, so keys and secrets stay out of logs) and HTTP metrics.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let metrics = &state.inner.metrics;
    metrics.http_requests_in_flight.inc();
    let mut resp = next.run(req).instrument(span.clone()).await;
    metrics.http_requests_in_flight.dec();
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    metrics.observe_http(&method, &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "request completed");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// `Authorization: Bearer <key>` against the hashed keys in the store.
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| {
        let (scheme, rest) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }) else {
        return ApiError::Unauthorized("missing 'Authorization: Bearer <api key>' header".into())
            .into_response();
    };
    match state.store().verify_key(token).await {
        Ok(Some(key)) => {
            tracing::debug!(key_id = %key.id, "authenticated");
            next.run(req).await
        }
        Ok(None) => ApiError::Unauthorized("invalid or revoked API key".into()).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Response {
    let detail = format!("method {} is not allowed on {}", req.method(), req.uri().path());
    (StatusCode::METHOD_NOT_ALLOWED, Json(serde_json::json!({ "detail": detail }))).into_response()
}

/// Parses a JSON body: malformed JSON → 400; anything but an object, or a wrong shape, type or
/// enum value → 422 naming the field (its JSON path).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("request body is empty; expected a JSON object".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; keep it — it locates the syntax error.
        ApiError::BadRequest(format!("malformed JSON: {message}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::Unprocessable("body: expected a JSON object".into()));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        if path == "." {
            ApiError::Unprocessable(body_message(&message))
        } else {
            ApiError::Unprocessable(format!("{path}: {message}"))
        }
    })
}

/// A top-level shape error, made readable: "missing field `name`" → "name: required field".
fn body_message(message: &str) -> String {
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        format!("{field}: required field is missing")
    } else {
        format!("body: {message}")
    }
}

/// A page of a list: `{data, hasMore, total}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub total: i64,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>, offset: i64, total: i64) -> Self {
        let has_more = offset + (data.len() as i64) < total;
        Self { data, has_more, total }
    }
}

/// `limit` (1–100, default 20) and `offset` (≥ 0, default 0) from the query string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pagination {
    pub limit: i64,
    pub offset: i64,
}

impl Pagination {
    pub fn from_query(query: &std::collections::HashMap<String, String>) -> Result<Self, ApiError> {
        let int = |name: &str, default: i64, min: i64, max: i64| -> Result<i64, ApiError> {
            match query.get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ if max == i64::MAX => Err(ApiError::Unprocessable(format!(
                        "{name}: must be an integer ≥ {min} (got '{v}')"
                    ))),
                    _ => Err(ApiError::Unprocessable(format!(
                        "{name}: must be an integer between {min} and {max} (got '{v}')"
                    ))),
                },
            }
        };
        Ok(Self { limit: int("limit", LIMIT_DEFAULT, 1, LIMIT_MAX)?, offset: int("offset", 0, 0, i64::MAX)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        name: String,
        voice_speed: Option<f64>,
    }

    fn status(e: ApiError) -> (u16, String) {
        (e.status().as_u16(), e.detail().to_string())
    }

    #[test]
    fn body_errors_are_classified_and_name_the_field() {
        let (s, d) = status(parse_body::<Body>(b"{\"name\": ").unwrap_err());
        assert_eq!(s, 400, "{d}");
        let (s, d) = status(parse_body::<Body>(b"").unwrap_err());
        assert_eq!(s, 400, "{d}");
        let (s, d) = status(parse_body::<Body>(br#"{"name":"a","voiceSpeed":"fast"}"#).unwrap_err());
        assert_eq!((s, d.starts_with("voiceSpeed: invalid type")), (422, true), "{d}");
        let (s, d) = status(parse_body::<Body>(b"{}").unwrap_err());
        assert_eq!((s, d.as_str()), (422, "name: required field is missing"));
        let (s, d) = status(parse_body::<Body>(b"[1]").unwrap_err());
        assert_eq!(s, 422, "{d}");
    }

    #[test]
    fn pagination_bounds() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(Pagination::from_query(&q(&[])).unwrap(), Pagination { limit: 20, offset: 0 });
        assert_eq!(Pagination::from_query(&q(&[("limit", "100")])).unwrap().limit, 100);
        for bad in ["0", "101", "x", "-1"] {
            let e = Pagination::from_query(&q(&[("limit", bad)])).unwrap_err();
            assert!(e.detail().starts_with("limit:"), "{}", e.detail());
        }
        assert!(Pagination::from_query(&q(&[("offset", "-1")])).is_err());
        assert!(Page::new(vec![1, 2], 0, 3).has_more);
        assert!(!Page::new(vec![3], 2, 3).has_more);
    }
}
