//! Media websocket endpoints: `GET /twilio/media`, `/telnyx/media`, `/vonage/media`,
//! `/plivo/media` and `/v1/media` (native). Authorisation happens in the start message (media
//! token or API key), so these routes take no `Authorization` header.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;

use super::AppState;
use crate::call::session;
use crate::transport::Protocol;

/// Largest websocket message or frame accepted (a 20 ms frame is at most a few KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Outbound bytes buffered per socket before writes fail (≈ 1 s of 48 kHz L16 with framing).
pub const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;

fn upgrade(ws: WebSocketUpgrade, state: AppState, protocol: Protocol) -> Response {
    let ctx = state.session_context();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_failed_upgrade(
            move |e| tracing::warn!(transport = protocol.as_str(), error = %e, "websocket upgrade failed"),
        )
        .on_upgrade(move |socket| session::run(socket, protocol, ctx))
}

pub async fn twilio(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Twilio)
}

pub async fn telnyx(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Telnyx)
}

pub async fn vonage(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Vonage)
}

pub async fn plivo(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Plivo)
}

pub async fn native(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade(ws, state, Protocol::Native)
}
