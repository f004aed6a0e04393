//! `/v1/agents`: create, list, get, patch, delete; the voice catalogue; attach/detach numbers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{parse_body, ApiError, AppState, Page, Pagination};
use crate::agent::{
    AgentConfig, AgentCreate, AgentPatch, AmbientSound, DenoisingMode, ModelTier, SttMode, VoiceMode,
};
use crate::store::{Agent, PhoneNumber, StoreError};
use crate::voices::Voice;

/// An agent as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentOut {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub voice_mode: VoiceMode,
    pub enable_messaging: bool,
    pub model_tier: ModelTier,
    pub system_prompt: Option<String>,
    pub begin_message: Option<String>,
    pub voice: String,
    pub transfer_number: Option<String>,
    pub voicemail_message: Option<String>,
    pub stt_mode: SttMode,
    pub ambient_sound: AmbientSound,
    pub denoising_mode: DenoisingMode,
    pub max_silence_ms: i64,
    pub voice_speed: f64,
    pub interruption_sensitivity: f64,
    pub enable_backchannel: bool,
    pub language: String,
    /// RFC 3339.
    pub created_at: String,
    /// The numbers attached to this agent.
    pub numbers: Vec<NumberBrief>,
}

/// A number as listed inside an agent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberBrief {
    pub id: String,
    pub phone_number: String,
    pub status: String,
    #[serde(rename = "type")]
    pub number_type: String,
}

impl From<&PhoneNumber> for NumberBrief {
    fn from(n: &PhoneNumber) -> Self {
        Self {
            id: n.id.clone(),
            phone_number: n.phone_number.clone(),
            status: n.status.clone(),
            number_type: n.number_type.clone(),
        }
    }
}

impl From<Agent> for AgentOut {
    fn from(a: Agent) -> Self {
        let c = a.config;
        Self {
            id: a.id,
            name: c.name,
            description: c.description,
            voice_mode: c.voice_mode,
            enable_messaging: c.enable_messaging,
            model_tier: c.model_tier,
            system_prompt: c.system_prompt,
            begin_message: c.begin_message,
            voice: c.voice,
            transfer_number: c.transfer_number,
            voicemail_message: c.voicemail_message,
            stt_mode: c.stt_mode,
            ambient_sound: c.ambient_sound,
            denoising_mode: c.denoising_mode,
            max_silence_ms: c.max_silence_ms,
            voice_speed: c.voice_speed,
            interruption_sensitivity: c.interruption_sensitivity,
            enable_backchannel: c.enable_backchannel,
            language: c.language,
            created_at: crate::store::fmt_time(a.created_at),
            numbers: a.numbers.iter().map(NumberBrief::from).collect(),
        }
    }
}

/// `{"data": [voice…]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceList {
    pub data: Vec<Voice>,
}

/// Body of `POST /v1/agents/{id}/numbers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachNumber {
    pub number_id: String,
}

/// Answer of attach and detach: the agent and the number concerned.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentOut {
    pub agent_id: String,
    pub number: NumberBrief,
}

/// Answer of a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentCreate,
    responses((status = 201, body = AgentOut), (status = 400), (status = 401), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<AgentOut>), ApiError> {
    let req: AgentCreate = parse_body(&body)?;
    let config = AgentConfig::create(req, state.voices())?;
    let agent = state.store().create_agent(config).await?;
    tracing::info!(agent_id = %agent.id, "agent created");
    Ok((StatusCode::CREATED, Json(agent.into())))
}

#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    params(("limit" = Option<i64>, Query, description = "1–100, default 20"),
           ("offset" = Option<i64>, Query, description = "≥ 0, default 0")),
    responses((status = 200, body = Page<AgentOut>), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<AgentOut>>, ApiError> {
    let page = Pagination::from_query(&query)?;
    let (agents, total) = state.store().list_agents(page.limit, page.offset).await?;
    Ok(Json(Page::new(agents.into_iter().map(AgentOut::from).collect(), page.offset, total)))
}

#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = AgentOut), (status = 401), (status = 404)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<AgentOut>, ApiError> {
    Ok(Json(state.store().get_agent(&id).await?.into()))
}

/// How often a patch is retried when another writer changed the agent in between (each retry
/// re-reads the row; a short jittered pause spreads racing writers apart).
const UPDATE_ATTEMPTS: usize = 10;

#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    request_body = AgentPatch,
    responses((status = 200, body = AgentOut), (status = 400), (status = 401), (status = 404), (status = 422)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AgentOut>, ApiError> {
    let mut attempt = 1;
    loop {
        // Parse and apply afresh each attempt: a retry re-applies the patch to the newer row.
        let patch: AgentPatch = parse_body(&body)?;
        let current = state.store().get_agent(&id).await?;
        let mut config = current.config.clone();
        config.apply(patch, state.voices())?;
        match state.store().update_agent(&id, current.version, &config).await {
            Err(StoreError::Stale) if attempt < UPDATE_ATTEMPTS => {
                let pause_ms = rand::random::<u64>() % (2 * attempt as u64) + 1;
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                attempt += 1;
            }
            other => return Ok(Json(other?.into())),
        }
    }
}

#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 401), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.store().delete_agent(&id).await?;
    tracing::info!(agent_id = %id, "agent deleted");
    Ok(Json(Deleted { id, deleted: true }))
}

#[utoipa::path(get, path = "/v1/agents/voices", tag = "agents",
    responses((status = 200, body = VoiceList), (status = 401)))]
pub async fn voices(State(state): State<AppState>) -> Json<VoiceList> {
    Json(VoiceList { data: state.voices().all().to_vec() })
}

/// What the installed engines cover for one supported language.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LanguageCoverage {
    /// BCP-47, one of the agent `language` values.
    pub language: &'static str,
    /// The speech-to-text engine that understands it; `null` = agents in it are refused at call start.
    pub speech_to_text: Option<&'static str>,
    /// Voice ids that speak it.
    pub voices: Vec<&'static str>,
    /// Whether an agent in this language can take calls here (heard and spoken).
    pub callable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LanguageList {
    pub data: Vec<LanguageCoverage>,
}

#[utoipa::path(get, path = "/v1/agents/languages", tag = "agents",
    responses((status = 200, body = LanguageList), (status = 401)))]
pub async fn languages(State(state): State<AppState>) -> Json<LanguageList> {
    let engines = state.engines();
    let data = crate::agent::LANGUAGES
        .iter()
        .map(|&language| {
            let speech_to_text = engines.stt.as_ref().and_then(|s| s.engine_for(language));
            let voices: Vec<&'static str> =
                state.voices().all().iter().filter(|v| v.language == language).map(|v| v.voice_id).collect();
            LanguageCoverage {
                language,
                callable: speech_to_text.is_some() && !voices.is_empty(),
                speech_to_text,
                voices,
            }
        })
        .collect();
    Json(LanguageList { data })
}

#[utoipa::path(post, path = "/v1/agents/{id}/numbers", tag = "agents", params(("id" = String, Path)),
    request_body = AttachNumber,
    responses((status = 200, body = AttachmentOut), (status = 401), (status = 404), (status = 409), (status = 422)))]
pub async fn attach_number(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AttachmentOut>, ApiError> {
    let req: AttachNumber = parse_body(&body)?;
    let number = state.store().attach_number(&id, &req.number_id).await?;
    tracing::info!(agent_id = %id, number_id = %number.id, "number attached");
    Ok(Json(AttachmentOut { agent_id: id, number: (&number).into() }))
}

#[utoipa::path(delete, path = "/v1/agents/{id}/numbers/{number_id}", tag = "agents",
    params(("id" = String, Path), ("number_id" = String, Path)),
    responses((status = 200, body = AttachmentOut), (status = 401), (status = 404)))]
pub async fn detach_number(
    State(state): State<AppState>,
    Path((id, number_id)): Path<(String, String)>,
) -> Result<Json<AttachmentOut>, ApiError> {
    let number = state.store().detach_number(&id, &number_id).await?;
    tracing::info!(agent_id = %id, number_id = %number.id, "number detached");
    Ok(Json(AttachmentOut { agent_id: id, number: (&number).into() }))
}
