//! Media websocket endpoints: `GET /twilio/media`, `/telnyx/media`, `/vonage/media`,
//! `/plivo/media` and `/v1/media` (native). Authorisation happens in the start message (media
//! token or API key), so these routes take no `Authorization` header.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::call::session;
use crate::transport::answer::{twilio_signature_valid, PublicBase};
use crate::transport::Protocol;

/// Largest websocket message or frame accepted (a 20 ms frame is at most a few KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Outbound bytes buffered per socket before writes fail (≈ 1 s of 48 kHz L16 with framing).
pub const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Bytes read from the socket per read call. tungstenite zero-fills this much on every read
/// (128 KiB by default — 19 % of server CPU at 300 calls); a 20 ms frame is a few hundred bytes,
/// and larger messages still arrive whole (the buffer grows as needed).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

fn upgrade(ws: WebSocketUpgrade, state: AppState, protocol: Protocol, pre_authorised: bool) -> Response {
    let ctx = state.session_context();
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_failed_upgrade(
            move |e| tracing::warn!(transport = protocol.as_str(), error = %e, "websocket upgrade failed"),
        )
        .on_upgrade(move |socket| session::run(socket, protocol, ctx, pre_authorised))
}

/// Twilio signs the stream's upgrade request with `X-Twilio-Signature` (over the `wss://` URL,
/// no parameters). When an auth token is configured, a valid signature authorises the stream by
/// itself; a present but wrong one is refused before the upgrade (403). Without a signature the
/// start message's `token` authorises, as on every protocol.
pub async fn twilio(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    let token = state.config().gateways.twilio_auth_token.as_deref().filter(|t| !t.is_empty());
    let pre_authorised = match (token, signature) {
        (Some(token), Some(signature)) => {
            let base = PublicBase::of_request(state.config().public_url.as_deref(), &headers, &uri);
            let url = base.map(|b| format!("{}{}", b.ws(), uri.path())).unwrap_or_default();
            if !twilio_signature_valid(token, &url, &[], signature) {
                tracing::warn!("twilio media upgrade with an invalid X-Twilio-Signature refused");
                return ApiError::Forbidden("X-Twilio-Signature does not match this stream URL".into())
                    .into_response();
            }
            true
        }
        _ => false,
    };
    upgrade(ws, state, Protocol::Twilio, pre_authorised)
}

pub async fn telnyx(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Telnyx, false)
}

pub async fn vonage(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Vonage, false)
}

pub async fn plivo(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Plivo, false)
}

pub async fn native(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Native, false)
}
