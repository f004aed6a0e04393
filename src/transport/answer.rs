//! Incoming-call answer endpoints: the webhook each gateway calls when one of our numbers rings,
//! answered with the gateway's document (TwiML, TeXML, NCCO, Plivo XML) that connects the call's
//! media websocket to us.
//!
//! For a number attached to an agent, the endpoint creates the call record `ringing` (with the
//! gateway's call id) and a one-time media token valid `media_token_ttl`, and passes `agentId`,
//! `token`, `callId`, `from` and `to` to the websocket in the gateway's way of carrying custom
//! parameters. An unknown number, or one with no agent, is refused in the gateway's own terms (a
//! valid document, never an HTTP error) and creates no record.
//!
//! | route | request | answer |
//! |---|---|---|
//! | `POST /twilio/voice` | form `CallSid, From, To, …` (`X-Twilio-Signature` checked when an auth token is set) | TwiML `<Connect><Stream url="wss://HOST/twilio/media"><Parameter …/>` / `<Reject reason="rejected"/>` |
//! | `POST\|GET /telnyx/voice` | form / query (TeXML) `CallSid, From, To, …` | TeXML `<Connect><Stream url="wss://HOST/telnyx/media" bidirectionalMode="rtp" …><Parameter …/>` / `<Reject reason="rejected"/>` |
//! | `GET\|POST /vonage/answer` | query / JSON `to, from, uuid, conversation_uuid` | NCCO `connect` to `wss://HOST/vonage/media` with `headers` / `talk` "not in service" |
//! | `POST\|GET /plivo/answer` | form / query `CallUUID, From, To, …` | Plivo XML `<Stream … extraHeaders="agentId=…,token=…,callId=…">wss://HOST/plivo/media</Stream>` / `<Hangup/>` |
//! | `GET /plivo/transfer?to=+1…` | fetched by Plivo on a REST transfer | `<Dial><Number>+1…</Number></Dial>` |
//! | `POST /twilio/status` | form `CallSid, CallStatus` — the status callback of calls placed by `POST /v1/calls` | 204; the call record follows (busy, no-answer, failed, …) |
//!
//! HOST is `public_url` when configured (`https` → `wss`, `http` → `ws`), else the request's
//! `X-Forwarded-Host` / `Host` with `X-Forwarded-Proto` (`http` → `ws`, otherwise `wss`).

use std::collections::HashMap;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

use crate::agent::is_e164;
use crate::api::{ApiError, AppState};
use crate::store::{Call, NewCall, StoreError};
use crate::transport::control::xml_escape;
use crate::transport::{outbound, Protocol};

/// The XML declaration every XML answer starts with.
pub(crate) const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
/// Header carrying Twilio's request signature.
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";
/// What a Vonage caller hears on a number we do not serve.
const VONAGE_NOT_IN_SERVICE: &str = "This number is not in service.";

/// The answer routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(twilio_voice))
        .route("/twilio/status", post(twilio_status))
        .route("/telnyx/voice", post(telnyx_voice).get(telnyx_voice))
        .route("/vonage/answer", get(vonage_answer_get).post(vonage_answer_post))
        .route("/plivo/answer", post(plivo_answer).get(plivo_answer))
        .route("/plivo/transfer", get(plivo_transfer))
}

// ---------------------------------------------------------------------------------------------
// Twilio request signatures
// ---------------------------------------------------------------------------------------------

fn twilio_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name (case-sensitive, byte order), then value for repeated names.
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Twilio's `X-Twilio-Signature` of a request: base64 of HMAC-SHA1 keyed by the auth token over
/// the full URL Twilio called, followed by every POST parameter sorted by name, name then value.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mac = twilio_mac(auth_token, url, params);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's signature of the request (constant-time comparison). Like
/// Twilio's own libraries, the URL is also tried with its default port removed or added, since
/// Twilio may sign either form.
pub fn twilio_signature_valid(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    if auth_token.is_empty() || expected.is_empty() {
        return false;
    }
    url_port_variants(url)
        .iter()
        .any(|candidate| twilio_mac(auth_token, candidate, params).verify_slice(&expected).is_ok())
}

/// `url` itself, plus the same URL with its scheme's default port stripped (when given) or added
/// (when absent).
fn url_port_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else { return out };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A port is after the last ':' that follows any IPv6 `]`.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].rfind(':').map(|i| i + host_end) {
        Some(colon) => {
            if &authority[colon + 1..] == default_port {
                out.push(format!("{scheme}://{}{tail}", &authority[..colon]));
            }
        }
        None => out.push(format!("{scheme}://{authority}:{default_port}{tail}")),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The public base URL
// ---------------------------------------------------------------------------------------------

/// Where gateways reach this server: scheme security plus `host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase {
    /// TLS (`https`/`wss`) or not (`http`/`ws`).
    pub secure: bool,
    /// `host[:port]`, possibly followed by a path prefix; never a trailing slash.
    pub authority: String,
}

impl PublicBase {
    /// `https://…` or `http://…`.
    pub fn http(&self) -> String {
        format!("{}://{}", if self.secure { "https" } else { "http" }, self.authority)
    }

    /// `wss://…` or `ws://…`.
    pub fn ws(&self) -> String {
        format!("{}://{}", if self.secure { "wss" } else { "ws" }, self.authority)
    }

    /// From `public_url` when set, else from the request: `X-Forwarded-Host`, `Host` or the URI's
    /// authority, secured unless `X-Forwarded-Proto` says `http`. `None` when no usable host.
    pub fn of_request(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Option<PublicBase> {
        if let Some(url) = public_url.map(str::trim).filter(|u| !u.is_empty()) {
            let (secure, rest) = match url.split_once("://") {
                Some((scheme, rest)) => {
                    (!matches!(scheme.to_ascii_lowercase().as_str(), "http" | "ws"), rest)
                }
                None => (true, url),
            };
            let authority = rest.trim_end_matches('/').to_string();
            return (!authority.is_empty()).then_some(PublicBase { secure, authority });
        }
        let first = |name: &str| -> Option<String> {
            let v = headers.get(name)?.to_str().ok()?;
            let v = v.split(',').next()?.trim();
            (!v.is_empty()).then(|| v.to_string())
        };
        let secure = !matches!(
            first("x-forwarded-proto").map(|p| p.to_ascii_lowercase()).as_deref(),
            Some("http" | "ws")
        );
        let host = first("x-forwarded-host")
            .or_else(|| first(header::HOST.as_str()))
            .or_else(|| uri.authority().map(|a| a.as_str().to_string()))?;
        let valid = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
        valid.then_some(PublicBase { secure, authority: host })
    }
}

// ---------------------------------------------------------------------------------------------
// Shared answer logic
// ---------------------------------------------------------------------------------------------

/// What an incoming call became.
enum Routed {
    /// Served by an agent: the `ringing` call and its media token.
    Agent { call: Box<Call>, token: String },
    /// Refused: no such number, or no agent on it.
    Refused,
}

/// The custom parameters a media socket needs, in the order they are written.
pub(crate) fn stream_params(call: &Call, token: &str) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("agentId", call.agent_id.clone().unwrap_or_default()),
        ("token", token.to_string()),
        ("callId", call.id.clone()),
    ];
    if let Some(from) = &call.from_number {
        params.push(("from", from.clone()));
    }
    if let Some(to) = &call.to_number {
        params.push(("to", to.clone()));
    }
    params
}

/// Gateways send numbers as `+14155550123`, or (Vonage, Plivo) as bare digits: bare digits
/// become E.164. Anything else (`anonymous`, SIP URIs) is kept as given.
fn normalise_number(raw: &str) -> String {
    let t = raw.trim();
    if (8..=15).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{t}")
    } else {
        t.to_string()
    }
}

/// Looks the called number up and, when an agent serves it, creates the `ringing` call.
async fn route_call(
    state: &AppState,
    protocol: Protocol,
    gateway_call_id: &str,
    from: Option<&str>,
    to: &str,
) -> Result<Routed, ApiError> {
    let to = normalise_number(to);
    let from = from.map(normalise_number).filter(|f| !f.is_empty());
    let gateway = protocol.as_str();
    let Some(number) = state.store().find_number(&to).await? else {
        tracing::info!(gateway, to = %to, gateway_call_id, "incoming call to an unregistered number: refused");
        return Ok(Routed::Refused);
    };
    let Some(agent_id) = number.agent_id.clone() else {
        tracing::info!(gateway, to = %to, gateway_call_id, "incoming call to a number with no agent: refused");
        return Ok(Routed::Refused);
    };
    let agent = match state.store().get_agent(&agent_id).await {
        Ok(agent) => agent,
        Err(StoreError::NotFound { .. }) => {
            tracing::info!(gateway, to = %to, agent_id, "incoming call: the number's agent is gone; refused");
            return Ok(Routed::Refused);
        }
        Err(e) => return Err(e.into()),
    };
    let new = NewCall {
        agent_id: Some(agent.id.clone()),
        agent_name: Some(agent.config.name.clone()),
        phone_number_id: Some(number.id.clone()),
        phone_number: Some(number.phone_number.clone()),
        from_number: from,
        to_number: Some(to.clone()),
        direction: "inbound".to_string(),
        transport: Some(gateway.to_string()),
        gateway_call_id: Some(gateway_call_id.to_string()),
        stream_id: None,
        ..NewCall::default()
    };
    let ttl =
        chrono::Duration::from_std(state.config().media_token_ttl).unwrap_or(chrono::Duration::seconds(60));
    let (call, token) = state.store().create_ringing_call(&new, ttl).await?;
    tracing::info!(gateway, call_id = %call.id, agent_id = %agent.id, gateway_call_id, "incoming call answered");
    Ok(Routed::Agent { call: Box::new(call), token })
}

pub(crate) fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

pub(crate) fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

pub(crate) fn missing_host() -> Response {
    ApiError::BadRequest(
        "cannot tell this server's public host: send a Host header or configure public_url".into(),
    )
    .into_response()
}

pub(crate) fn form_error(rejection: FormRejection) -> Response {
    ApiError::BadRequest(format!("body: expected an application/x-www-form-urlencoded form ({rejection})"))
        .into_response()
}

/// The first non-empty value of a form field.
pub(crate) fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).find(|v| !v.is_empty())
}

pub(crate) fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    field(params, name).ok_or_else(|| ApiError::BadRequest(format!("{name}: required field is missing")))
}

/// `<Connect><Stream url=…><Parameter name value/>…</Stream></Connect>` (Twilio and TeXML).
pub(crate) fn connect_stream(url: &str, extra_attrs: &str, params: &[(&str, String)]) -> String {
    let mut doc = format!("{XML_DECL}<Response><Connect><Stream url=\"{}\"{extra_attrs}>", xml_escape(url));
    for (name, value) in params {
        doc.push_str(&format!("<Parameter name=\"{}\" value=\"{}\"/>", xml_escape(name), xml_escape(value)));
    }
    doc.push_str("</Stream></Connect></Response>");
    doc
}

fn reject_document() -> String {
    format!("{XML_DECL}<Response><Reject reason=\"rejected\"/></Response>")
}

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

/// `POST /twilio/voice`: TwiML connecting the call to `/twilio/media`.
async fn twilio_voice(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri) else {
        return missing_host();
    };
    if let Some(refused) = check_twilio_signature(&state, &base, &headers, &uri, &params) {
        return refused;
    }
    let (call_sid, to) = match (required(&params, "CallSid"), required(&params, "To")) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    match route_call(&state, Protocol::Twilio, call_sid, field(&params, "From"), to).await {
        Ok(Routed::Agent { call, token }) => {
            let url = format!("{}/twilio/media", base.ws());
            let mut stream = stream_params(&call, &token);
            // Answering-machine detection (when enabled on the call): `machine_start`,
            // `machine_end_beep`, `human`, … — the agent leaves its voicemail message on a machine.
            if let Some(by) = field(&params, "AnsweredBy") {
                stream.push(("answeredBy", by.to_string()));
            }
            xml_response(connect_stream(&url, "", &stream))
        }
        Ok(Routed::Refused) => xml_response(reject_document()),
        Err(e) => e.into_response(),
    }
}

/// With a Twilio auth token configured, a request must carry a valid `X-Twilio-Signature`
/// over the URL Twilio called and its form: `Some(403)` when it does not.
fn check_twilio_signature(
    state: &AppState,
    base: &PublicBase,
    headers: &HeaderMap,
    uri: &Uri,
    params: &[(String, String)],
) -> Option<Response> {
    let auth_token = state.config().gateways.twilio_auth_token.as_deref().filter(|t| !t.is_empty())?;
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", base.http());
    let signature = headers.get(TWILIO_SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let valid = signature.is_some_and(|sig| twilio_signature_valid(auth_token, &url, params, sig));
    if valid {
        return None;
    }
    tracing::warn!(
        route = uri.path(),
        signature_present = signature.is_some(),
        "twilio webhook refused: X-Twilio-Signature does not match"
    );
    Some(detail(StatusCode::FORBIDDEN, "invalid or missing X-Twilio-Signature"))
}

/// `POST /twilio/status`: Twilio's status callback for the calls we place (`CallSid`,
/// `CallStatus`). The record follows it: `busy`, `no-answer`, `failed` and `canceled` end a call
/// that never connected; `completed` ends one whose media stream is not live here (a live one
/// is ended by its stream); `queued`, `initiated`, `ringing` and `in-progress` change nothing
/// (the call is `ringing` until its stream starts, which makes it `in-progress`).
async fn twilio_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri) else {
        return missing_host();
    };
    if let Some(refused) = check_twilio_signature(&state, &base, &headers, &uri, &params) {
        return refused;
    }
    let (call_sid, status) = match (required(&params, "CallSid"), required(&params, "CallStatus")) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let call = match state.store().find_call_by_gateway_id(Protocol::Twilio.as_str(), call_sid).await {
        Ok(Some(call)) => call,
        Ok(None) => return detail(StatusCode::NOT_FOUND, format!("CallSid: no call {call_sid}")),
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::info!(call_id = %call.id, call_sid, status, "twilio call status");
    let Some(progress) = outbound::twilio_progress(status) else {
        return ApiError::Unprocessable(format!(
            "CallStatus: unknown value {status:?} (queued, initiated, ringing, in-progress, completed, busy, \
             no-answer, failed, canceled)"
        ))
        .into_response();
    };
    match outbound::follow(&state, &call, progress).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Telnyx TeXML
// ---------------------------------------------------------------------------------------------

/// The TeXML `<Stream>` attributes of our Telnyx streams: bidirectional RTP (Telnyx's default,
/// `mp3`, would not carry live audio back), PCMU both ways.
pub(crate) const TELNYX_STREAM_ATTRS: &str =
    r#" codec="PCMU" bidirectionalMode="rtp" bidirectionalCodec="PCMU""#;

/// `POST /telnyx/voice` (or `GET` with the same fields in the query, for TeXML applications set
/// to fetch with GET): TeXML connecting the call to `/telnyx/media` in bidirectional RTP mode
/// (Telnyx's default, `mp3`, would not carry live audio back), PCMU both ways.
async fn telnyx_voice(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri) else {
        return missing_host();
    };
    let call_sid = match field(&params, "CallSid").or_else(|| field(&params, "CallControlId")) {
        Some(c) => c,
        None => return ApiError::BadRequest("CallSid: required field is missing".into()).into_response(),
    };
    let to = match required(&params, "To") {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match route_call(&state, Protocol::Telnyx, call_sid, field(&params, "From"), to).await {
        Ok(Routed::Agent { call, token }) => {
            let url = format!("{}/telnyx/media", base.ws());
            xml_response(connect_stream(&url, TELNYX_STREAM_ATTRS, &stream_params(&call, &token)))
        }
        Ok(Routed::Refused) => xml_response(reject_document()),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Vonage NCCO
// ---------------------------------------------------------------------------------------------

/// An NCCO connecting the call to our media socket at `ws_url` (L16 16 kHz), the stream
/// parameters as the websocket's custom headers.
pub(crate) fn vonage_connect_ncco(ws_url: &str, from: Option<&str>, params: Vec<(&str, String)>) -> Value {
    let headers: serde_json::Map<String, Value> =
        params.into_iter().map(|(name, value)| (name.to_string(), Value::String(value))).collect();
    let mut connect = serde_json::Map::new();
    connect.insert("action".into(), json!("connect"));
    if let Some(from) = from {
        connect.insert("from".into(), json!(from));
    }
    connect.insert(
        "endpoint".into(),
        json!([{
            "type": "websocket",
            "uri": ws_url,
            "content-type": "audio/l16;rate=16000",
            "headers": headers,
        }]),
    );
    json!([connect])
}

/// `GET /vonage/answer?to=…&from=…&uuid=…&conversation_uuid=…`.
async fn vonage_answer_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => vonage_answer(&state, &headers, &uri, q).await,
        Err(e) => ApiError::BadRequest(format!("query: {e}")).into_response(),
    }
}

/// `POST /vonage/answer` with a JSON body `{to, from, uuid, conversation_uuid, …}`.
async fn vonage_answer_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::BadRequest(format!("malformed JSON: {e}")).into_response(),
    };
    let Value::Object(obj) = value else {
        return ApiError::BadRequest("body: expected a JSON object".into()).into_response();
    };
    let q = obj
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect();
    vonage_answer(&state, &headers, &uri, q).await
}

async fn vonage_answer(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    q: HashMap<String, String>,
) -> Response {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), headers, uri) else {
        return missing_host();
    };
    let Some(to) = get("to") else {
        return ApiError::BadRequest("to: required field is missing".into()).into_response();
    };
    let Some(uuid) = get("uuid") else {
        return ApiError::BadRequest("uuid: required field is missing".into()).into_response();
    };
    let from = get("from");
    match route_call(state, Protocol::Vonage, uuid, from, to).await {
        Ok(Routed::Agent { call, token }) => {
            let mut params = stream_params(&call, &token);
            // Vonage's `websocket:connected` frame does not name the call; the media socket needs
            // its uuid for REST call control (hang-up, transfer).
            params.push(("uuid", uuid.to_string()));
            Json(vonage_connect_ncco(&format!("{}/vonage/media", base.ws()), from, params)).into_response()
        }
        Ok(Routed::Refused) => {
            Json(json!([{ "action": "talk", "text": VONAGE_NOT_IN_SERVICE }])).into_response()
        }
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Plivo
// ---------------------------------------------------------------------------------------------

/// `POST /plivo/answer` (or `GET`, Plivo's `answer_method=GET`): Plivo XML streaming the call to `/plivo/media`, bidirectional μ-law.
async fn plivo_answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri) else {
        return missing_host();
    };
    let (call_uuid, to) = match (required(&params, "CallUUID"), required(&params, "To")) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    match route_call(&state, Protocol::Plivo, call_uuid, field(&params, "From"), to).await {
        Ok(Routed::Agent { call, token }) => {
            xml_response(plivo_stream_document(&format!("{}/plivo/media", base.ws()), &call, &token))
        }
        Ok(Routed::Refused) => xml_response(format!("{XML_DECL}<Response><Hangup/></Response>")),
        Err(e) => e.into_response(),
    }
}

/// Plivo XML streaming the call to our media socket at `ws_url`, bidirectional μ-law. Plivo passes
/// `extraHeaders` to the socket as the start message's `extra_headers`; only the three values
/// admission needs go there (512-byte limit).
pub(crate) fn plivo_stream_document(ws_url: &str, call: &Call, token: &str) -> String {
    let extra: Vec<String> = stream_params(call, token)
        .into_iter()
        .filter(|(k, _)| matches!(*k, "agentId" | "token" | "callId"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{XML_DECL}<Response><Stream bidirectional=\"true\" keepCallAlive=\"true\" \
         contentType=\"audio/x-mulaw;rate=8000\" extraHeaders=\"{}\">{}</Stream></Response>",
        xml_escape(&extra.join(",")),
        xml_escape(ws_url),
    )
}

/// `GET /plivo/transfer?to=+1…`: the XML Plivo fetches on a REST transfer (see
/// [`crate::transport::control`]): dial the number.
async fn plivo_transfer(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::BadRequest(format!("query: {e}")).into_response(),
    };
    let Some(raw) = q.get("to") else {
        return ApiError::BadRequest("to: required query parameter is missing".into()).into_response();
    };
    // An unencoded `+` arrives as a space.
    let to = match raw.strip_prefix(' ') {
        Some(rest) => format!("+{}", rest.trim()),
        None => raw.trim().to_string(),
    };
    if !is_e164(&to) {
        return ApiError::BadRequest(format!("to: '{raw}' is not an E.164 number ('+' then 8–15 digits)"))
            .into_response();
    }
    xml_response(format!("{XML_DECL}<Response><Dial><Number>{}</Number></Dial></Response>", xml_escape(&to)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants() {
        assert_eq!(
            url_port_variants("https://h.io/a?b=1"),
            vec!["https://h.io/a?b=1".to_string(), "https://h.io:443/a?b=1".to_string()]
        );
        assert_eq!(url_port_variants("https://h.io:443/a"), vec!["https://h.io:443/a", "https://h.io/a"]);
        assert_eq!(url_port_variants("http://h.io:8080/a"), vec!["http://h.io:8080/a"]);
        assert_eq!(url_port_variants("http://[::1]/x"), vec!["http://[::1]/x", "http://[::1]:80/x"]);
    }

    #[test]
    fn public_base_from_config_and_headers() {
        let h = HeaderMap::new();
        let uri: Uri = "/twilio/voice".parse().unwrap();
        let b = PublicBase::of_request(Some("https://voice.example.com/"), &h, &uri).unwrap();
        assert_eq!(
            (b.http(), b.ws()),
            ("https://voice.example.com".into(), "wss://voice.example.com".into())
        );
        let b = PublicBase::of_request(Some("http://10.0.0.1:8080/sb"), &h, &uri).unwrap();
        assert_eq!(b.ws(), "ws://10.0.0.1:8080/sb");

        let mut h = HeaderMap::new();
        h.insert("host", "inner:8080".parse().unwrap());
        assert_eq!(PublicBase::of_request(None, &h, &uri).unwrap().ws(), "wss://inner:8080");
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        assert_eq!(PublicBase::of_request(None, &h, &uri).unwrap().ws(), "ws://inner:8080");
        h.insert("x-forwarded-proto", "https, http".parse().unwrap());
        h.insert("x-forwarded-host", "edge.example.com, inner".parse().unwrap());
        assert_eq!(PublicBase::of_request(None, &h, &uri).unwrap().ws(), "wss://edge.example.com");
        h.insert("x-forwarded-host", "evil\"host".parse().unwrap());
        assert_eq!(PublicBase::of_request(None, &h, &uri), None);
    }

    #[test]
    fn numbers_normalise() {
        assert_eq!(normalise_number("14155550123"), "+14155550123");
        assert_eq!(normalise_number(" 14155550123"), "+14155550123");
        assert_eq!(normalise_number("+14155550123"), "+14155550123");
        assert_eq!(normalise_number("anonymous"), "anonymous");
    }
}
