//! `switchboard loadtest`: simulated callers against any server speaking a media-websocket
//! protocol (PROTOCOLS.md §2), as a gateway would speak it.
//!
//! ```text
//! fixture    call annotations + WAV → 20 ms frames in the wire format
//! wire       the gateway side of each protocol: opening, media, DTMF, mark answers, parsing
//! ```

pub mod fixture;
pub mod wire;
