//! Outbound calls at the gateways (`POST /v1/calls`): which gateway places a call, the dial
//! request each one gets — carrying the document that connects the answered call's media stream
//! back to us with the call's one-time media token, so the stream claims the same call record —
//! and the gateways' progress callbacks, which move the record until that stream starts.
//!
//! | gateway | answered call runs | progress callbacks to | callback fields |
//! |---|---|---|---|
//! | Twilio | TwiML `<Connect><Stream url=wss://HOST/twilio/media>` + `<Parameter>`s | `POST /twilio/status` (signed) | form `CallSid, CallStatus` |
//! | Telnyx | TeXML `<Connect><Stream url=wss://HOST/telnyx/media …>` + `<Parameter>`s | `POST /telnyx/status` | form `CallSid, CallStatus` |
//! | Vonage | NCCO `connect` websocket `wss://HOST/vonage/media` with the parameters as headers | `POST /vonage/events` | JSON `uuid, status` |
//! | Plivo | answer URL `GET\|POST /plivo/outbound?callId=…&token=…` → XML `<Stream>` | `POST /plivo/status` (ring and hang-up URL) | form `CallUUID, RequestUUID, CallStatus, HangupCause` |
//!
//! Every callback maps onto one [`Progress`]: busy / no-answer / failed / canceled end a call
//! that never connected; `completed` ends one whose media stream is not live on this node (a
//! live one is ended by its stream); the rest change nothing (the call stays `ringing` until its
//! stream starts). Twilio's callbacks are signed and checked ([`super::answer`]); Telnyx, Vonage
//! and Plivo sign theirs in ways we do not verify yet, so their callbacks only act on a call we
//! placed (direction `outbound`, same gateway): anything else is a 404.

use std::collections::HashMap;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::Value;

use super::answer::{
    connect_stream, detail, field, form_error, missing_host, plivo_stream_document, required, stream_params,
    vonage_connect_ncco, xml_response, PublicBase, TELNYX_STREAM_ATTRS, XML_DECL,
};
use super::control::{segment, ControlError};
use super::Protocol;
use crate::api::{ApiError, AppState};
use crate::config::OutboundGateway;
use crate::store::{Call, CallStatus, StoreError};

/// End reason of a call the gateway could not place.
pub const FAILED_REASON: &str = "the gateway could not place the call";

/// The callback routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/telnyx/status", post(telnyx_status))
        .route("/vonage/events", post(vonage_events))
        .route("/plivo/status", post(plivo_status).get(plivo_status))
        .route("/plivo/outbound", post(plivo_outbound).get(plivo_outbound))
}

// ---------------------------------------------------------------------------------------------
// Choosing the gateway and dialling
// ---------------------------------------------------------------------------------------------

/// The gateway of an outbound call: the request's `gateway`, else the configured
/// `outbound_gateway`, else the only gateway with outbound credentials. Errors name what to set:
/// a gateway without its credentials is a 503; several configured and none chosen is a 422.
pub fn choose(state: &AppState, requested: Option<OutboundGateway>) -> Result<OutboundGateway, ApiError> {
    let control = state.control();
    let unavailable = |gateway: OutboundGateway, named_by: &str, missing: &str| {
        ApiError::Unavailable(format!(
            "{named_by}: outbound calls through {} need {missing}",
            gateway.as_str()
        ))
    };
    if let Some(gateway) = requested {
        return match control.outbound_missing(gateway) {
            None => Ok(gateway),
            Some(missing) => Err(unavailable(gateway, "gateway", missing)),
        };
    }
    if let Some(gateway) = state.config().gateways.outbound_gateway {
        return match control.outbound_missing(gateway) {
            None => Ok(gateway),
            Some(missing) => Err(unavailable(gateway, "outbound_gateway (server setting)", missing)),
        };
    }
    let ready: Vec<OutboundGateway> =
        OutboundGateway::ALL.into_iter().filter(|g| control.outbound_missing(*g).is_none()).collect();
    match ready.as_slice() {
        [only] => Ok(*only),
        [] => Err(ApiError::Unavailable(
            "gateway: no gateway can place outbound calls; configure twilio_account_sid and \
             twilio_auth_token, telnyx_api_key and telnyx_connection_id, vonage_jwt, or plivo_auth_id and \
             plivo_auth_token"
                .into(),
        )),
        several => {
            let names: Vec<&str> = several.iter().map(|g| g.as_str()).collect();
            Err(ApiError::Unprocessable(format!(
                "gateway: several gateways can place the call ({}); name one in gateway, or configure \
                 outbound_gateway",
                names.join(", ")
            )))
        }
    }
}

/// Asks `gateway` to call `to` from `from` for the `ringing` `call`, whose answered media stream
/// comes back to `base` with `token`; returns the gateway's id for the call.
pub async fn dial(
    state: &AppState,
    gateway: OutboundGateway,
    call: &Call,
    token: &str,
    base: &PublicBase,
    from: &str,
    to: &str,
) -> Result<String, ControlError> {
    let control = state.control();
    let params = stream_params(call, token);
    match gateway {
        OutboundGateway::Twilio => {
            let twiml = connect_stream(&format!("{}/twilio/media", base.ws()), "", &params);
            control.twilio_dial(from, to, &twiml, &format!("{}/twilio/status", base.http())).await
        }
        OutboundGateway::Telnyx => {
            let texml = connect_stream(&format!("{}/telnyx/media", base.ws()), TELNYX_STREAM_ATTRS, &params);
            control.telnyx_dial(from, to, &texml, &format!("{}/telnyx/status", base.http())).await
        }
        OutboundGateway::Vonage => {
            let ncco = vonage_connect_ncco(&format!("{}/vonage/media", base.ws()), None, params);
            control.vonage_dial(from, to, ncco, &format!("{}/vonage/events", base.http())).await
        }
        OutboundGateway::Plivo => {
            // Plivo fetches the answer document only when the callee picks up; the token rides in
            // the URL we hand Plivo (as it rides in the TwiML we hand Twilio).
            let answer_url = format!(
                "{}/plivo/outbound?callId={}&token={}",
                base.http(),
                segment(&call.id),
                segment(token)
            );
            control.plivo_dial(from, to, &answer_url, &format!("{}/plivo/status", base.http())).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Following the callbacks
// ---------------------------------------------------------------------------------------------

/// What a progress callback means for the call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Queued, ringing, answered: nothing to write (the stream makes the call `in-progress`).
    Pending,
    /// The call never connected: end it with this status and reason.
    Ended(CallStatus, &'static str),
    /// The call is over at the gateway: end it unless its stream is live here.
    Completed,
}

/// Twilio's (and Telnyx TeXML's) `CallStatus`; `None` for a value neither sends.
pub fn twilio_progress(status: &str) -> Option<Progress> {
    Some(match status {
        "queued" | "initiated" | "ringing" | "in-progress" | "answered" => Progress::Pending,
        "busy" => Progress::Ended(CallStatus::Busy, "busy"),
        "no-answer" => Progress::Ended(CallStatus::NoAnswer, "no-answer"),
        "failed" => Progress::Ended(CallStatus::Failed, FAILED_REASON),
        "canceled" => Progress::Ended(CallStatus::Completed, "canceled"),
        "completed" => Progress::Completed,
        _ => return None,
    })
}

/// A Vonage event's `status`; `None` for a value Vonage does not document.
pub fn vonage_progress(status: &str) -> Option<Progress> {
    Some(match status {
        "started" | "ringing" | "answered" | "human" | "machine" | "disconnected" => Progress::Pending,
        "busy" => Progress::Ended(CallStatus::Busy, "busy"),
        // Declined by the callee; carriers report most declines as busy.
        "rejected" => Progress::Ended(CallStatus::Busy, "rejected"),
        "timeout" | "unanswered" => Progress::Ended(CallStatus::NoAnswer, "no-answer"),
        "failed" => Progress::Ended(CallStatus::Failed, FAILED_REASON),
        "cancelled" => Progress::Ended(CallStatus::Completed, "canceled"),
        "completed" => Progress::Completed,
        _ => return None,
    })
}

/// A Plivo callback's `CallStatus`; `None` for a value Plivo does not send.
pub fn plivo_progress(status: &str) -> Option<Progress> {
    Some(match status {
        "queued" | "ringing" | "early-media" | "in-progress" => Progress::Pending,
        "busy" => Progress::Ended(CallStatus::Busy, "busy"),
        "no-answer" | "timeout" => Progress::Ended(CallStatus::NoAnswer, "no-answer"),
        "failed" => Progress::Ended(CallStatus::Failed, FAILED_REASON),
        "cancel" | "canceled" => Progress::Ended(CallStatus::Completed, "canceled"),
        "completed" => Progress::Completed,
        _ => return None,
    })
}

/// Writes what `progress` means to `call`'s record (a call already ended stays as it is).
pub async fn follow(state: &AppState, call: &Call, progress: Progress) -> Result<(), ApiError> {
    let end = match progress {
        Progress::Pending => None,
        Progress::Ended(status, reason) => Some((status, reason)),
        Progress::Completed if state.registry().subscribe(&call.id).is_none() => {
            Some((CallStatus::Completed, "completed at the gateway"))
        }
        Progress::Completed => None,
    };
    if let Some((status, reason)) = end {
        state.store().end_call(&call.id, status, reason).await?;
    }
    Ok(())
}

/// The outbound call `protocol` knows by the first of `ids` that matches one, else a 404
/// naming `field`.
async fn outbound_call(
    state: &AppState,
    protocol: Protocol,
    field: &str,
    ids: &[&str],
) -> Result<Call, Response> {
    for id in ids {
        match state.store().find_call_by_gateway_id(protocol.as_str(), id).await {
            Ok(Some(call)) if call.direction == "outbound" => return Ok(call),
            Ok(_) => {}
            Err(e) => return Err(ApiError::from(e).into_response()),
        }
    }
    let id = ids.first().copied().unwrap_or_default();
    Err(detail(StatusCode::NOT_FOUND, format!("{field}: no outbound {} call {id}", protocol.as_str())))
}

fn unknown_status(field: &str, value: &str, known: &str) -> Response {
    ApiError::Unprocessable(format!("{field}: unknown value {value:?} ({known})")).into_response()
}

/// Applies a status callback's `progress` to the outbound call `protocol` knows as `id` (named by
/// `field` in the callback); 404 naming `field` when there is none.
async fn progress_call(
    state: &AppState,
    protocol: Protocol,
    field: &str,
    id: &str,
    status: &str,
    progress: Progress,
) -> Response {
    let call = match outbound_call(state, protocol, field, &[id]).await {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    tracing::info!(call_id = %call.id, gateway = protocol.as_str(), gateway_call_id = id, status, "outbound call status");
    answer(state, &call, progress).await
}

async fn answer(state: &AppState, call: &Call, progress: Progress) -> Response {
    match follow(state, call, progress).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /telnyx/status`: the TeXML status callback (`CallSid`, `CallStatus`, Twilio's values).
async fn telnyx_status(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let (call_sid, status) = match (required(&params, "CallSid"), required(&params, "CallStatus")) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let Some(progress) = twilio_progress(status) else {
        let known = "queued, initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled";
        return unknown_status("CallStatus", status, known);
    };
    progress_call(&state, Protocol::Telnyx, "CallSid", call_sid, status, progress).await
}

/// `POST /vonage/events`: the event webhook of the calls we place (JSON `uuid`, `status`).
/// Events without a `status` but with a `type` (transfer, …) are acknowledged and ignored.
async fn vonage_events(State(state): State<AppState>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::BadRequest(format!("malformed JSON: {e}")).into_response(),
    };
    let Value::Object(event) = value else {
        return ApiError::BadRequest("body: expected a JSON object".into()).into_response();
    };
    let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
    let Some(uuid) = text("uuid") else {
        return ApiError::BadRequest("uuid: required field is missing".into()).into_response();
    };
    let Some(status) = text("status") else {
        if let Some(kind) = text("type") {
            tracing::debug!(uuid, kind, "vonage event without a status ignored");
            return StatusCode::NO_CONTENT.into_response();
        }
        return ApiError::BadRequest("status: required field is missing".into()).into_response();
    };
    let Some(progress) = vonage_progress(status) else {
        let known = "started, ringing, answered, human, machine, disconnected, completed, busy, rejected, \
                     timeout, unanswered, failed, cancelled";
        return unknown_status("status", status, known);
    };
    progress_call(&state, Protocol::Vonage, "uuid", uuid, status, progress).await
}

/// `POST /plivo/status` (or `GET`): Plivo's ring and hang-up callbacks (`CallUUID`,
/// `RequestUUID`, `CallStatus`, `HangupCause`). The dial answered only the `RequestUUID`; the
/// first callback naming the `CallUUID` makes it the call's gateway id (hang-up and cancel
/// address calls by it).
async fn plivo_status(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let call_uuid = field(&params, "CallUUID");
    let request_uuid = field(&params, "RequestUUID");
    let ids: Vec<&str> = call_uuid.into_iter().chain(request_uuid).collect();
    if ids.is_empty() {
        return ApiError::BadRequest("CallUUID: required field is missing (or RequestUUID)".into())
            .into_response();
    }
    let status = match required(&params, "CallStatus") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(progress) = plivo_progress(status) else {
        let known = "ringing, in-progress, completed, busy, no-answer, timeout, failed, cancel";
        return unknown_status("CallStatus", status, known);
    };
    let call = match outbound_call(&state, Protocol::Plivo, "CallUUID", &ids).await {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    tracing::info!(call_id = %call.id, status, hangup_cause = field(&params, "HangupCause"), "plivo call status");
    if let Some(uuid) = call_uuid {
        if let Err(e) = adopt_call_uuid(&state, &call, uuid).await {
            return ApiError::from(e).into_response();
        }
    }
    answer(&state, &call, progress).await
}

/// Makes Plivo's `CallUUID` the gateway id of a call that is not over yet.
async fn adopt_call_uuid(state: &AppState, call: &Call, uuid: &str) -> Result<(), StoreError> {
    if call.status.is_final() || call.gateway_call_id.as_deref() == Some(uuid) {
        return Ok(());
    }
    state.store().set_gateway_call_id(&call.id, uuid).await
}

/// `POST|GET /plivo/outbound?callId=…&token=…`: the answer URL of the calls we place through
/// Plivo, fetched when the callee picks up: Plivo XML streaming the call to `/plivo/media` with
/// the call's media token. A call that is not an outbound Plivo call still ringing gets
/// `<Hangup/>` (a valid document, as the answer endpoints refuse).
async fn plivo_outbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::BadRequest(format!("query: {e}")).into_response(),
    };
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return form_error(rejection),
    };
    let get = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let (Some(call_id), Some(token)) = (get("callId"), get("token")) else {
        let name = if get("callId").is_none() { "callId" } else { "token" };
        return ApiError::BadRequest(format!("{name}: required query parameter is missing")).into_response();
    };
    let Some(base) = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri) else {
        return missing_host();
    };
    let hangup = || xml_response(format!("{XML_DECL}<Response><Hangup/></Response>"));
    let call = match state.store().get_call(call_id).await {
        Ok(call) => call,
        Err(StoreError::NotFound { .. }) => return hangup(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ours = call.direction == "outbound"
        && call.transport.as_deref() == Some(Protocol::Plivo.as_str())
        && call.status == CallStatus::Ringing;
    if !ours {
        tracing::info!(
            call_id,
            status = call.status.as_str(),
            "plivo answer for a call that is not ringing: hung up"
        );
        return hangup();
    }
    if let Some(uuid) = field(&params, "CallUUID") {
        if let Err(e) = adopt_call_uuid(&state, &call, uuid).await {
            return ApiError::from(e).into_response();
        }
    }
    tracing::info!(call_id, "plivo outbound call answered");
    xml_response(plivo_stream_document(&format!("{}/plivo/media", base.ws()), &call, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_maps_its_end_states_alike() {
        let busy = Some(Progress::Ended(CallStatus::Busy, "busy"));
        let no_answer = Some(Progress::Ended(CallStatus::NoAnswer, "no-answer"));
        let failed = Some(Progress::Ended(CallStatus::Failed, FAILED_REASON));
        let canceled = Some(Progress::Ended(CallStatus::Completed, "canceled"));
        assert_eq!([twilio_progress("busy"), vonage_progress("busy"), plivo_progress("busy")], [busy; 3]);
        assert_eq!(
            [twilio_progress("no-answer"), vonage_progress("timeout"), vonage_progress("unanswered")],
            [no_answer; 3]
        );
        assert_eq!([plivo_progress("no-answer"), plivo_progress("timeout")], [no_answer; 2]);
        assert_eq!(
            [twilio_progress("failed"), vonage_progress("failed"), plivo_progress("failed")],
            [failed; 3]
        );
        assert_eq!(
            [twilio_progress("canceled"), vonage_progress("cancelled"), plivo_progress("cancel")],
            [canceled; 3]
        );
        for completed in
            [twilio_progress("completed"), vonage_progress("completed"), plivo_progress("completed")]
        {
            assert_eq!(completed, Some(Progress::Completed));
        }
        for pending in
            [twilio_progress("ringing"), vonage_progress("answered"), plivo_progress("in-progress")]
        {
            assert_eq!(pending, Some(Progress::Pending));
        }
        assert_eq!(vonage_progress("rejected"), Some(Progress::Ended(CallStatus::Busy, "rejected")));
        assert_eq!([twilio_progress("exploded"), vonage_progress(""), plivo_progress("Busy")], [None; 3]);
    }
}
