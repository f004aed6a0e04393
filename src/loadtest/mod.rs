//! `switchboard loadtest`: simulated callers against any server speaking a media-websocket
//! protocol (PROTOCOLS.md §2), as a gateway would speak it.
//!
//! ```text
//! options    LoadtestArgs (flags) → Options (validated)
//! fixture    call annotations + WAV → 20 ms frames in the wire format
//! wire       the gateway side of each protocol: opening, media, DTMF, mark answers, parsing
//! caller     one call: pacing, playback model, recording → CallRecord
//! analysis   pure: timeline → latency, barge-in, jitter, gaps per call
//! report     totals, percentiles, JSON schema, the table
//! plot       SVG: latency histogram and latency over the run
//! ```

pub mod analysis;
pub mod caller;
pub mod fixture;
pub mod options;
pub mod plot;
pub mod report;
pub mod wire;

pub use options::{InvalidOption, LoadtestArgs, Options};
pub use report::Report;
