//! `/v1/calls`: call records with their turns (caller text + agent response) and the text
//! messages the agent sent. Listing: `GET /v1/calls` (filters `status`, `direction`, `search`,
//! `agentId`) and `GET /v1/agents/{id}/calls`; one call with its `transcripts` and `messages`:
//! `GET /v1/calls/{id}`; its transcript alone (`/transcript`) or live as Server-Sent Events
//! (`/transcript/stream`); ending a live call (`POST /v1/calls/{id}/end`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

use super::{ApiError, AppState, Page, Pagination};
use crate::agent::{is_e164, CallOverrides, ModelTier};
use crate::store::{fmt_time, Call, CallFilter, CallMessage, CallStatus, CallTurn, NewCall, StoreError};
use crate::transport::{Protocol, StartInfo};

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

/// How long `POST /v1/calls/{id}/end` waits for the call's record to be final.
const END_WAIT: Duration = Duration::from_secs(5);
/// How often a transcript stream re-reads a call that is not live on this node (ringing, or
/// served by another node) until it ends.
const STREAM_POLL: Duration = Duration::from_secs(1);
/// Events a transcript stream may hold for a slow client.
const STREAM_BUFFER: usize = 32;

/// Why a call was hung up through the API (the call record's `endReason`).
pub const API_END_REASON: &str = "ended by the API";

#[utoipa::path(post, path = "/v1/calls/{id}/end", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = CallOut), (status = 401), (status = 404), (status = 409)))]
/// Hangs a call up: a live call through its supervisor (the gateway is told, the record written
/// as for an agent's hang-up); a call still ringing is marked ended. Answers the final record.
pub async fn end(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CallOut>, ApiError> {
    let store = state.store();
    let call = store.get_call(&id).await?;
    if call.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "call {id} has already ended (status {})",
            call.status.as_str()
        )));
    }
    let feed = state.registry().subscribe(&id);
    if state.registry().end_with(&id, API_END_REASON) {
        if let Some(mut rx) = feed {
            // The feed closes once the supervisor has written the end of the record.
            let closed =
                async { while !matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)) {} };
            if tokio::time::timeout(END_WAIT, closed).await.is_err() {
                tracing::warn!(call_id = %id, "call did not end within the wait; answering its current record");
            }
        }
    } else {
        // Not live here: ringing (no media stream yet) or live on another node.
        if call.status == CallStatus::InProgress {
            return Err(ApiError::Conflict(format!(
                "call {id} is in progress but not on this node; end it where it is served"
            )));
        }
        cancel_ringing(&state, &call).await;
        store.end_call(&id, CallStatus::Completed, API_END_REASON).await?;
    }
    Ok(Json(CallOut::from(store.get_call(&id).await?)))
}

/// A call's transcript: its turns in order and the conversation as text.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptDoc {
    pub call_id: String,
    pub status: String,
    pub transcripts: Vec<TranscriptOut>,
    /// `Caller: …` / `Agent: …` lines, one per utterance.
    pub text: String,
}

/// The conversation as `Caller:` / `Agent:` lines.
fn transcript_text(turns: &[TranscriptOut]) -> String {
    let mut lines = Vec::with_capacity(turns.len() * 2);
    for t in turns {
        lines.push(format!("Caller: {}", t.transcript));
        if let Some(r) = t.response.as_deref().filter(|r| !r.is_empty()) {
            lines.push(format!("Agent: {r}"));
        }
    }
    lines.join("\n")
}

#[utoipa::path(get, path = "/v1/calls/{id}/transcript", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = TranscriptDoc), (status = 401), (status = 404)))]
pub async fn transcript(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TranscriptDoc>, ApiError> {
    let store = state.store();
    let call = store.get_call(&id).await?;
    let transcripts: Vec<TranscriptOut> =
        store.list_call_turns(&id).await?.into_iter().map(TranscriptOut::from).collect();
    let text = transcript_text(&transcripts);
    Ok(Json(TranscriptDoc { call_id: call.id, status: call.status.as_str().to_string(), transcripts, text }))
}

#[utoipa::path(get, path = "/v1/calls/{id}/transcript/stream", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream",
        description = "`connected` {callId, status}; then `turn` {id, transcript, response, createdAt} for each \
            turn written so far and each one written from now on (a turn comes again, same id, when its \
            response is written or cut to what the caller heard: replace by id); `ended` {callId, status, \
            endedAt, endReason} when the call is over, then the stream closes."),
        (status = 401), (status = 404)))]
pub async fn transcript_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let call = state.store().get_call(&id).await?; // 404 before the stream opens
    let (tx, mut rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(feed_transcript(state, call, tx));
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn sse(kind: &str, data: &impl Serialize) -> Event {
    Event::default().event(kind).json_data(data).unwrap_or_else(|_| Event::default().event(kind))
}

/// Feeds one transcript stream until the call has ended or the client has gone (a send fails).
async fn feed_transcript(state: AppState, call: Call, tx: mpsc::Sender<Event>) {
    let id = call.id.clone();
    let connected = serde_json::json!({"callId": id, "status": call.status.as_str()});
    if tx.send(sse("connected", &connected)).await.is_err() {
        return;
    }
    // What each turn looked like when last sent, so a replayed or repeated turn is sent once.
    let mut sent: HashMap<String, Option<String>> = HashMap::new();
    loop {
        // Subscribe before reading the store: a turn written in between is seen twice, never lost.
        let live = state.registry().subscribe(&id);
        let Ok(turns) = state.store().list_call_turns(&id).await else { return };
        for turn in turns {
            if send_turn(&tx, &mut sent, turn).await.is_err() {
                return;
            }
        }
        match live {
            Some(mut live) => loop {
                match live.recv().await {
                    Ok(turn) => {
                        if send_turn(&tx, &mut sent, turn).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind: the store has every turn; read it again.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            },
            None => {
                let Ok(now) = state.store().get_call(&id).await else { return };
                if !now.status.is_final() {
                    tokio::select! {
                        () = tokio::time::sleep(STREAM_POLL) => {}
                        () = tx.closed() => return,
                    }
                    continue;
                }
            }
        }
        let Ok(now) = state.store().get_call(&id).await else { return };
        if now.status.is_final() {
            // Turns written after the last read (the feed closed with them queued) are in the store.
            let Ok(turns) = state.store().list_call_turns(&id).await else { return };
            for turn in turns {
                if send_turn(&tx, &mut sent, turn).await.is_err() {
                    return;
                }
            }
            let out = CallOut::from(now);
            let ended = serde_json::json!({"callId": out.id, "status": out.status, "endedAt": out.ended_at,
                "endReason": out.end_reason});
            let _ = tx.send(sse("ended", &ended)).await;
            return;
        }
    }
}

/// Sends a turn unless it was already sent as it is now.
async fn send_turn(
    tx: &mpsc::Sender<Event>,
    sent: &mut HashMap<String, Option<String>>,
    turn: CallTurn,
) -> Result<(), mpsc::error::SendError<Event>> {
    if sent.get(&turn.id) == Some(&turn.response) {
        return Ok(());
    }
    sent.insert(turn.id.clone(), turn.response.clone());
    tx.send(sse("turn", &TranscriptOut::from(turn))).await
}

/// Tells the gateway to stop a call that is still ringing (best effort: the record is ended
/// whatever the gateway answers, and a stream that connects later is refused).
async fn cancel_ringing(state: &AppState, call: &Call) {
    let (Some(protocol), Some(gateway_id)) =
        (call.transport.as_deref().and_then(Protocol::parse), call.gateway_call_id.clone())
    else {
        return;
    };
    let start = StartInfo { call_id: Some(gateway_id), ..StartInfo::default() };
    if let Err(e) = state.control().cancel(protocol, &start).await {
        tracing::warn!(call_id = %call.id, error = %e, "gateway did not cancel the ringing call");
    }
}

#[utoipa::path(get, path = "/v1/calls/{id}/recording", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, content_type = "audio/wav",
        description = "16-bit stereo PCM WAV at the call's wire rate: the caller on the left channel, the \
            agent on the right. Written as the call goes, so a live call's recording so far."),
        (status = 401), (status = 404)))]
pub async fn recording(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let call = state.store().get_call(&id).await?;
    let path = crate::call::recording::recording_path(&state.config().recordings_dir, &call.id);
    let wav = tokio::task::spawn_blocking(move || crate::call::recording::read_wav(&path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("reading the recording: {e}")))?;
    let Some(wav) = wav else {
        let why =
            if call.disable_recording { "it was placed with disableRecording" } else { "none was made" };
        return Err(ApiError::NotFound(format!("call {id} has no recording ({why})")));
    };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "audio/wav")
        .header(axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.wav\""))
        .body(axum::body::Body::from(wav))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// How long the media token of an outbound call lives: the callee has this long to answer
/// (Twilio, Telnyx and Plivo ring for up to 60 s by default) on top of the configured token lifetime.
const OUTBOUND_RING_ALLOWANCE: Duration = Duration::from_secs(60);

/// `POST /v1/calls` body: an outbound call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundCall {
    /// The agent that talks on the call.
    pub agent_id: String,
    /// Who to call, E.164.
    pub to_number: String,
    /// One of our numbers to call from; default: the agent's first number.
    pub from_number_id: Option<String>,
    /// Spoken first instead of the agent's `beginMessage`.
    pub initial_greeting: Option<String>,
    /// Replaces the agent's `systemPrompt` for this call.
    pub system_prompt: Option<String>,
    /// Extra `{{var}}` values for the prompt.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
    pub model_tier: Option<ModelTier>,
    /// Do not record this call.
    #[serde(default)]
    pub disable_recording: bool,
    /// The gateway that places the call: `twilio`, `telnyx`, `vonage` or `plivo`. Default: the
    /// server's `outbound_gateway`, else the only gateway with outbound credentials.
    #[schema(value_type = Option<String>)]
    pub gateway: Option<crate::config::OutboundGateway>,
}

#[utoipa::path(post, path = "/v1/calls", tag = "calls", request_body = OutboundCall,
    responses((status = 201, body = CallOut, description = "The call, `ringing`; it follows the gateway's status callbacks"),
        (status = 400), (status = 401), (status = 404), (status = 422), (status = 502), (status = 503)))]
/// Places an outbound call through the chosen gateway ([`crate::transport::outbound::choose`]):
/// the call record is created `ringing` with a media token, the gateway is asked to dial with
/// the document that connects the answered call's media stream back here with that token
/// (TwiML / TeXML `<Parameter>`, NCCO websocket headers, Plivo answer URL), and its progress
/// callbacks move the record on. The agent's settings apply, with the body's overrides on top.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CallOut>), ApiError> {
    let req: OutboundCall = super::parse_body(&body)?;
    if !is_e164(&req.to_number) {
        return Err(ApiError::Unprocessable(format!(
            "toNumber: {:?} is not an E.164 number ('+' then 8–15 digits)",
            req.to_number
        )));
    }
    if req.variables.keys().any(|k| k.is_empty()) {
        return Err(ApiError::Unprocessable("variables: names must not be empty".into()));
    }
    let agent = match state.store().get_agent(&req.agent_id).await {
        Ok(a) => a,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::NotFound(format!("agentId: no agent {}", req.agent_id)))
        }
        Err(e) => return Err(e.into()),
    };
    let from = match &req.from_number_id {
        Some(id) => match state.store().get_number(id).await {
            Ok(n) => n,
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::NotFound(format!("fromNumberId: no number {id}")))
            }
            Err(e) => return Err(e.into()),
        },
        None => agent.numbers.first().cloned().ok_or_else(|| {
            ApiError::Unprocessable(
                "fromNumberId: the agent has no number to call from; attach one or pass fromNumberId".into(),
            )
        })?,
    };
    let gateway = crate::transport::outbound::choose(&state, req.gateway)?;
    let base = crate::transport::answer::PublicBase::of_request(
        state.config().public_url.as_deref(),
        &headers,
        &uri,
    )
    .ok_or_else(|| {
        ApiError::BadRequest(
            "cannot tell this server's public host for the gateway to call back: send a Host header or \
                 configure public_url"
                .into(),
        )
    })?;
    let overrides = CallOverrides {
        initial_greeting: req.initial_greeting,
        system_prompt: req.system_prompt,
        variables: req.variables,
        model_tier: req.model_tier,
    };
    let new = NewCall {
        agent_id: Some(agent.id.clone()),
        agent_name: Some(agent.config.name.clone()),
        phone_number_id: Some(from.id.clone()),
        phone_number: Some(from.phone_number.clone()),
        from_number: Some(from.phone_number.clone()),
        to_number: Some(req.to_number.clone()),
        direction: "outbound".into(),
        transport: Some(gateway.as_str().into()),
        gateway_call_id: None,
        stream_id: None,
        disable_recording: req.disable_recording,
        overrides: (overrides != CallOverrides::default())
            .then(|| serde_json::to_string(&overrides))
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let ttl = chrono::Duration::from_std(state.config().media_token_ttl + OUTBOUND_RING_ALLOWANCE)
        .unwrap_or(chrono::Duration::seconds(120));
    let (call, token) = state.store().create_ringing_call(&new, ttl).await?;
    let dialled = crate::transport::outbound::dial(
        &state,
        gateway,
        &call,
        &token,
        &base,
        &from.phone_number,
        &req.to_number,
    )
    .await;
    match dialled {
        Ok(gateway_id) => {
            state.store().set_gateway_call_id(&call.id, &gateway_id).await?;
            tracing::info!(call_id = %call.id, gateway = gateway.as_str(), gateway_call_id = %gateway_id,
                agent_id = %agent.id, "outbound call ringing");
            Ok((StatusCode::CREATED, Json(CallOut::from(state.store().get_call(&call.id).await?))))
        }
        Err(e) => {
            let reason = format!("the gateway did not place the call: {e}");
            state.store().end_call(&call.id, CallStatus::Failed, &reason).await?;
            tracing::warn!(call_id = %call.id, gateway = gateway.as_str(), error = %e,
                "outbound call refused by the gateway");
            Err(ApiError::BadGateway(format!("{reason} (call {} recorded as failed)", call.id)))
        }
    }
}
