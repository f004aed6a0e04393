//! Media-websocket transports: one file per gateway protocol (PROTOCOLS.md §2), all mapping the
//! wire to one internal vocabulary — [`MediaEvent`] in, [`Outbound`] out. Nothing above this
//! module knows a wire format.
//!
//! Each protocol implements [`Wire`], a small per-connection state machine (stream ids, Telnyx
//! chunk reordering, Vonage frame size) that turns websocket messages into events and outbound
//! items into websocket messages. The socket loop that drives a `Wire` is generic over any
//! `Stream`/`Sink` of [`WsMessage`], so tests can drive it with channels.

pub mod answer;
pub mod control;
pub mod native;
pub mod outbound;
pub mod plivo;
pub mod signatures;
pub mod telnyx;
pub mod twilio;
pub mod vonage;
mod wire_util;

use std::collections::HashMap;

pub use axum::extract::ws::Message as WsMessage;

/// The gateway protocol of a media websocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Twilio,
    Telnyx,
    Vonage,
    Plivo,
    Native,
}

impl Protocol {
    pub const ALL: [Protocol; 5] =
        [Protocol::Twilio, Protocol::Telnyx, Protocol::Vonage, Protocol::Plivo, Protocol::Native];

    /// The lower-case name used in metrics labels, logs and the call record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Vonage => "vonage",
            Self::Plivo => "plivo",
            Self::Native => "native",
        }
    }

    /// The protocol of a name given by [`Protocol::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// A fresh per-connection wire state for this protocol.
    pub fn wire(self) -> Box<dyn Wire> {
        match self {
            Self::Twilio => Box::new(twilio::TwilioWire::default()),
            Self::Telnyx => Box::new(telnyx::TelnyxWire::default()),
            Self::Vonage => Box::new(vonage::VonageWire::default()),
            Self::Plivo => Box::new(plivo::PlivoWire::default()),
            Self::Native => Box::new(native::NativeWire::default()),
        }
    }
}

/// Audio encoding on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// G.711 μ-law, 8 bits per sample.
    Pcmu,
    /// G.711 A-law, 8 bits per sample.
    Pcma,
    /// 16-bit linear PCM, little-endian.
    L16Le,
    /// 16-bit linear PCM, big-endian (network order, RFC 3551 L16: Telnyx's RTP payloads).
    L16Be,
    /// Opus, one 20 ms packet per message.
    Opus,
}

/// The codec and rate negotiated by the start message. Always mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireFormat {
    pub encoding: Encoding,
    pub sample_rate_hz: u32,
}

/// Length of one wire frame.
pub const FRAME_MS: u32 = 20;

impl WireFormat {
    pub const PCMU_8K: WireFormat = WireFormat { encoding: Encoding::Pcmu, sample_rate_hz: 8000 };

    /// Samples in one 20 ms frame.
    pub fn frame_samples(&self) -> usize {
        (self.sample_rate_hz * FRAME_MS / 1000) as usize
    }

    /// Bytes in one 20 ms frame; `None` for Opus (variable-size packets).
    pub fn frame_bytes(&self) -> Option<usize> {
        match self.encoding {
            Encoding::Pcmu | Encoding::Pcma => Some(self.frame_samples()),
            Encoding::L16Le | Encoding::L16Be => Some(self.frame_samples() * 2),
            Encoding::Opus => None,
        }
    }
}

/// What the start message tells about the call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartInfo {
    /// The gateway's stream id (Twilio `streamSid`, Telnyx `stream_id`, Plivo `streamId`); echoed
    /// in outbound messages. Native streams get one made up by the wire.
    pub stream_id: String,
    /// The gateway's call id for REST call control (Twilio `callSid`, Telnyx `call_control_id`,
    /// Plivo `callId`, Vonage's `uuid` header when present).
    pub call_id: Option<String>,
    /// The gateway account (Twilio `accountSid`), when given.
    pub account_id: Option<String>,
    /// Codec and rate of both directions.
    pub format: WireFormat,
    /// Custom parameters: `agentId`, `token`, `from`, `to`, `mode` (`loopback`) and anything else
    /// the answer endpoint or the client put there. Keys as given on the wire.
    pub params: HashMap<String, String>,
}

impl Default for WireFormat {
    fn default() -> Self {
        Self::PCMU_8K
    }
}

/// An inbound event, already free of wire details.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The stream starts; nothing but `Start` is valid before it.
    Start(StartInfo),
    /// One encoded audio payload in the negotiated format (normally one 20 ms frame).
    Audio(Vec<u8>),
    /// A DTMF key press.
    Dtmf(char),
    /// The gateway reached (played) a mark / checkpoint we sent — or discarded it on `clear`.
    Mark(String),
    /// The gateway confirms a `clear` (Plivo `clearedAudio`).
    Cleared,
    /// The caller or gateway ended the stream.
    Stop,
}

/// An outbound item for the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One encoded 20 ms frame in the negotiated format.
    Audio(Vec<u8>),
    /// A named mark after the audio sent so far; the gateway echoes it once played.
    Mark(String),
    /// Drop the audio the gateway has buffered (barge-in).
    Clear,
    /// End the call (in-band only on the native protocol; others use REST call control).
    Hangup { reason: String },
    /// Hand the call to a number (in-band only on the native protocol).
    Transfer { to: String },
}

/// Websocket close codes used for protocol faults (RFC 6455 §7.4.1).
pub mod close_code {
    /// Binary where text was expected, or the reverse.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Not JSON, bad base64, missing or wrong-typed fields.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Authorisation failed, media before start, unknown agent.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Server fault.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// At capacity or draining: try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// A fault in what the gateway sent; ends the connection with a close code and reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid JSON: {0}")]
    NotJson(String),
    #[error("binary frame where the {0} protocol sends JSON text")]
    UnexpectedBinary(&'static str),
    #[error("text frame where the {0} protocol sends binary audio")]
    UnexpectedText(&'static str),
    #[error("invalid base64 in media payload")]
    BadBase64,
    #[error("{event}: missing or invalid field '{field}'")]
    BadField { event: String, field: &'static str },
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    #[error("audio before the start message")]
    MediaBeforeStart,
    #[error("a second start message")]
    DuplicateStart,
}

impl ProtocolError {
    /// The websocket close code this fault ends the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::UnexpectedBinary(_) | Self::UnexpectedText(_) => close_code::UNSUPPORTED_DATA,
            Self::NotJson(_) | Self::BadBase64 | Self::BadField { .. } | Self::UnsupportedFormat(_) => {
                close_code::INVALID_PAYLOAD
            }
            Self::MediaBeforeStart | Self::DuplicateStart => close_code::POLICY_VIOLATION,
        }
    }
}

/// The per-connection state machine of one wire protocol.
///
/// `decode` is called for every text/binary message (never for ping/pong/close); unknown event
/// types are ignored (forward compatibility) — they return no event and no error. `encode`
/// returns `None` when the protocol has no in-band form for the item (e.g. Twilio hang-up, which
/// goes through REST call control) or when it is not yet possible (before start).
pub trait Wire: Send {
    /// The protocol this wire speaks.
    fn protocol(&self) -> Protocol;

    /// Decodes one message, pushing zero or more events to `out` (Telnyx may release several
    /// reordered chunks at once). Audio before `Start` is `MediaBeforeStart`.
    fn decode(&mut self, msg: WsMessage, out: &mut Vec<MediaEvent>) -> Result<(), ProtocolError>;

    /// Encodes one outbound item into a websocket message.
    fn encode(&mut self, item: &Outbound) -> Option<WsMessage>;
}
