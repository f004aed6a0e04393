//! `/v1/agents/{id}/webhook`: create/replace, read, delete; the delivery log; a test send.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::deliver::send_once;
use super::{envelope, sign};
use crate::api::{parse_body, ApiError, AppState, Page, Pagination};
use crate::store::{DeliveryStatus, NewDelivery, NewWebhook, Webhook, WebhookDelivery};

/// `contextLimit` range and default (history items per turn).
pub const CONTEXT_LIMIT_RANGE: (i64, i64) = (0, 50);
pub const CONTEXT_LIMIT_DEFAULT: i64 = 10;
/// `timeout` range and default, seconds.
pub const TIMEOUT_RANGE_S: (i64, i64) = (5, 120);
pub const TIMEOUT_DEFAULT_S: i64 = 30;
/// Longest accepted URL.
const URL_MAX_CHARS: usize = 2048;

/// The webhook routes (mounted under `/v1`, behind authentication).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/{id}/webhook", post(put).get(get_one).delete(delete))
        .route("/agents/{id}/webhook/deliveries", get(deliveries))
        .route("/agents/{id}/webhook/test", post(test))
}

/// Body of `POST /v1/agents/{id}/webhook`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreate {
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// History items sent with each turn, 0–50 (default 10).
    pub context_limit: Option<i64>,
    /// Seconds to wait for an answer, 5–120 (default 30).
    pub timeout: Option<i64>,
}

/// A webhook as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    pub id: String,
    pub url: String,
    /// `whsec_…`: the HMAC-SHA256 key of `X-Webhook-Signature`.
    pub secret: String,
    pub status: String,
    pub context_limit: i64,
    /// Seconds.
    pub timeout: i64,
    /// RFC 3339.
    pub created_at: String,
}

impl From<Webhook> for WebhookOut {
    fn from(h: Webhook) -> Self {
        Self {
            id: h.id,
            url: h.url,
            secret: h.secret,
            status: h.status,
            context_limit: h.context_limit,
            timeout: h.timeout_s,
            created_at: h.created_at,
        }
    }
}

/// One delivery (an attempt, or a queued event and its attempts so far).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    pub id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// The last attempt's HTTP status, if the endpoint answered.
    pub http_status: Option<i64>,
    pub attempt_count: i64,
    pub last_attempt_at: Option<String>,
    /// When a pending delivery is next tried.
    pub next_retry_at: Option<String>,
    /// `agent.message`, `agent.call_ended` or `agent.test`.
    pub event_type: String,
    pub error_message: Option<String>,
    /// The call the event belongs to (none for tests).
    pub call_id: Option<String>,
    pub created_at: String,
}

impl From<WebhookDelivery> for DeliveryOut {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.id,
            status: d.status.as_str().to_string(),
            http_status: d.http_status,
            attempt_count: d.attempt_count,
            last_attempt_at: d.last_attempt_at,
            next_retry_at: d.next_retry_at,
            event_type: d.event_type,
            error_message: d.error_message,
            call_id: d.call_id,
            created_at: d.created_at,
        }
    }
}

/// Checks the body's values; returns the webhook to store (with a new secret).
fn validate(req: WebhookCreate) -> Result<NewWebhook, ApiError> {
    let url = req.url.trim().to_string();
    if url.chars().count() > URL_MAX_CHARS {
        return Err(ApiError::Unprocessable(format!("url: must be at most {URL_MAX_CHARS} characters")));
    }
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| ApiError::Unprocessable(format!("url: '{url}' is not an absolute URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::Unprocessable(format!(
            "url: must be an http:// or https:// URL with a host (got '{url}')"
        )));
    }
    let ranged = |name: &str, v: Option<i64>, (lo, hi): (i64, i64), default: i64| match v {
        None => Ok(default),
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::Unprocessable(format!("{name}: must be between {lo} and {hi} (got {n})"))),
    };
    Ok(NewWebhook {
        url,
        secret: sign::new_secret(),
        context_limit: ranged("contextLimit", req.context_limit, CONTEXT_LIMIT_RANGE, CONTEXT_LIMIT_DEFAULT)?,
        timeout_s: ranged("timeout", req.timeout, TIMEOUT_RANGE_S, TIMEOUT_DEFAULT_S)?,
    })
}

/// 404 unless the agent exists.
async fn require_agent(state: &AppState, id: &str) -> Result<(), ApiError> {
    if state.store().agent_exists(id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("agent '{id}' not found")))
    }
}

/// The agent's webhook, 404 naming what is missing.
async fn require_webhook(state: &AppState, id: &str) -> Result<Webhook, ApiError> {
    require_agent(state, id).await?;
    state
        .store()
        .get_webhook(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent '{id}' has no webhook")))
}

#[utoipa::path(post, path = "/v1/agents/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    request_body = WebhookCreate,
    responses((status = 201, body = WebhookOut, description = "created, or replaced with a new id and secret"),
              (status = 400), (status = 401), (status = 404), (status = 422)))]
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<WebhookOut>), ApiError> {
    let req: WebhookCreate = parse_body(&body)?;
    let new = validate(req)?;
    let hook = state.store().put_webhook(&id, new).await?;
    tracing::info!(agent_id = %id, webhook_id = %hook.id, "webhook set");
    Ok((StatusCode::CREATED, Json(hook.into())))
}

#[utoipa::path(get, path = "/v1/agents/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookOut), (status = 401), (status = 404)))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookOut>, ApiError> {
    Ok(Json(require_webhook(&state, &id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/agents/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 404)))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    require_agent(&state, &id).await?;
    if !state.store().delete_webhook(&id).await? {
        return Err(ApiError::NotFound(format!("agent '{id}' has no webhook")));
    }
    tracing::info!(agent_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/agents/{id}/webhook/deliveries", tag = "webhooks",
    params(("id" = String, Path),
           ("limit" = Option<i64>, Query, description = "1–100, default 20"),
           ("offset" = Option<i64>, Query, description = "≥ 0, default 0")),
    responses((status = 200, body = Page<DeliveryOut>), (status = 401), (status = 404), (status = 422)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<DeliveryOut>>, ApiError> {
    let page = Pagination::from_query(&query)?;
    require_agent(&state, &id).await?;
    let (rows, total) = state.store().list_deliveries(&id, page.limit, page.offset).await?;
    Ok(Json(Page::new(rows.into_iter().map(DeliveryOut::from).collect(), page.offset, total)))
}

#[utoipa::path(post, path = "/v1/agents/{id}/webhook/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryOut, description = "the signed agent.test attempt and its outcome"),
              (status = 401), (status = 404)))]
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryOut>, ApiError> {
    let hook = require_webhook(&state, &id).await?;
    let body = envelope::test(&id).to_body();
    // Answer within the REST deadline even when the webhook's own timeout is longer.
    let limit =
        state.config().request_timeout.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1));
    let timeout = Duration::from_secs(hook.timeout_s.max(1) as u64).min(limit);
    let attempted_at = crate::store::now_text();
    let outcome = send_once(state.webhook_http(), &hook, &body, None, timeout).await;
    let (status, http_status, error_message) = match outcome {
        Ok(s) => (DeliveryStatus::Delivered, Some(i64::from(s)), None),
        Err(e) => (DeliveryStatus::Failed, e.http_status(), Some(e.to_string())),
    };
    state.metrics().webhook_delivery(status.as_str());
    let delivery = state
        .store()
        .insert_delivery(NewDelivery {
            agent_id: id.clone(),
            call_id: None,
            event_type: envelope::EVENT_TEST.to_string(),
            payload: body,
            status,
            http_status,
            attempt_count: 1,
            last_attempt_at: Some(attempted_at),
            next_retry_at: None,
            error_message,
        })
        .await?;
    tracing::info!(agent_id = %id, delivery_id = %delivery.id, status = status.as_str(), "webhook test sent");
    Ok(Json(delivery.into()))
}
