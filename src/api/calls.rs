//! `/v1/calls`: call records with their turns (caller text + agent response) and the text
//! messages the agent sent. Listing: `GET /v1/calls` (filters `status`, `direction`, `search`,
//! `agentId`) and `GET /v1/agents/{id}/calls`; one call with its `transcripts` and `messages`:
//! `GET /v1/calls/{id}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState, Page, Pagination};
use crate::store::{fmt_time, Call, CallFilter, CallMessage, CallStatus, CallTurn};

/// A call as the API returns it (`transcripts` and `messages` only on `GET /v1/calls/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallOut {
    pub id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub phone_number: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    /// `ringing`, `in-progress`, `completed`, `failed`, `busy` or `no-answer`.
    pub status: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcripts: Option<Vec<TranscriptOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageOut>>,
}

/// One caller turn and the agent's response to it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptOut {
    pub id: String,
    pub transcript: String,
    pub response: Option<String>,
    pub created_at: String,
}

/// A text message the agent sent during the call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    pub id: String,
    pub to_number: String,
    pub from_number: String,
    pub body: String,
    /// `queued`, `sent`, `failed` or `not-configured`.
    pub status: String,
    /// The provider's id for it (Twilio message sid), once sent.
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
}

impl From<Call> for CallOut {
    fn from(c: Call) -> Self {
        Self {
            id: c.id,
            agent_id: c.agent_id,
            agent_name: c.agent_name,
            phone_number_id: c.phone_number_id,
            phone_number: c.phone_number,
            from_number: c.from_number,
            to_number: c.to_number,
            direction: c.direction,
            status: c.status.as_str().to_string(),
            started_at: c.started_at.map(fmt_time),
            ended_at: c.ended_at.map(fmt_time),
            end_reason: c.end_reason,
            transcripts: None,
            messages: None,
        }
    }
}

impl From<CallTurn> for TranscriptOut {
    fn from(t: CallTurn) -> Self {
        Self { id: t.id, transcript: t.transcript, response: t.response, created_at: fmt_time(t.created_at) }
    }
}

impl From<CallMessage> for MessageOut {
    fn from(m: CallMessage) -> Self {
        Self {
            id: m.id,
            to_number: m.to_number,
            from_number: m.from_number,
            body: m.body,
            status: m.status,
            provider_id: m.provider_id,
            error: m.error,
            created_at: fmt_time(m.created_at),
        }
    }
}

/// The filters of a list request; a bad value is a 422 naming the parameter.
fn filter(query: &HashMap<String, String>) -> Result<CallFilter, ApiError> {
    let status = match query.get("status") {
        None => None,
        Some(s) => Some(CallStatus::parse(s).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "status: must be one of ringing, in-progress, completed, failed, busy, no-answer (got {s:?})"
            ))
        })?),
    };
    let direction = match query.get("direction").map(String::as_str) {
        None => None,
        Some(d @ ("inbound" | "outbound" | "web")) => Some(d.to_string()),
        Some(d) => {
            return Err(ApiError::Unprocessable(format!(
                "direction: must be one of inbound, outbound, web (got {d:?})"
            )))
        }
    };
    Ok(CallFilter {
        agent_id: query.get("agentId").cloned(),
        status,
        direction,
        search: query.get("search").cloned(),
    })
}

async fn page(
    state: &AppState,
    filter: &CallFilter,
    query: &HashMap<String, String>,
) -> Result<Page<CallOut>, ApiError> {
    let p = Pagination::from_query(query)?;
    let (calls, total) = state.store().list_calls(filter, p.limit, p.offset).await?;
    Ok(Page::new(calls.into_iter().map(CallOut::from).collect(), p.offset, total))
}

#[utoipa::path(get, path = "/v1/calls", tag = "calls",
    params(("status" = Option<String>, Query), ("direction" = Option<String>, Query),
           ("search" = Option<String>, Query), ("agentId" = Option<String>, Query),
           ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = Page<CallOut>), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<CallOut>>, ApiError> {
    let f = filter(&query)?;
    Ok(Json(page(&state, &f, &query).await?))
}

#[utoipa::path(get, path = "/v1/agents/{id}/calls", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = Page<CallOut>), (status = 401), (status = 404), (status = 422)))]
pub async fn of_agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<CallOut>>, ApiError> {
    state.store().get_agent(&id).await?; // 404 for an unknown agent
    let f = CallFilter { agent_id: Some(id), ..filter(&query)? };
    Ok(Json(page(&state, &f, &query).await?))
}

#[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = CallOut), (status = 401), (status = 404)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CallOut>, ApiError> {
    let store = state.store();
    let call = store.get_call(&id).await?;
    let transcripts = store.list_call_turns(&id).await?.into_iter().map(TranscriptOut::from).collect();
    let messages = store.list_call_messages(&id).await?.into_iter().map(MessageOut::from).collect();
    Ok(Json(CallOut { transcripts: Some(transcripts), messages: Some(messages), ..CallOut::from(call) }))
}
