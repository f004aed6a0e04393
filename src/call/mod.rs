//! One phone call = one websocket = one supervised set of actors.
//!
//! ```text
//! session (socket → Wire) ─ encoded audio ─► listener ─ ListenerEvent ─► conversation
//!                                                 │ (loopback: PCM)         │ SpeakerCommand / PlayoutCommand::Clear
//!                                                 ▼                         ▼
//! socket ◄─ Outbound ─ playout ◄─ SpeechChunk ─ speaker   (playout's clock is driven by the session) ◄──────────────────┘
//!                          └─ PlayoutEvent (what was sent / played) ─► conversation
//! ```
//! Playout's clock runs in the session task, which owns the socket: at each 20 ms deadline the
//! session has playout build the frame (playout's state, inbox and events are its own) and writes
//! it straight out — no lock, no channel hop, one task wake-up per outbound frame.
//!
//! The [`supervisor`] owns the actors: it spawns them with bounded channels, ends them all on
//! stop, hang-up or error, and writes the call record. The message types below are the
//! interfaces between the stages; later stages (VAD/STT, LLM, TTS) fill the actors without
//! changing them.

pub mod conversation;
pub mod hosted;
pub mod listener;
pub mod listening;
pub mod messaging;
pub mod playout;
pub mod queue;
pub mod recorder;
pub mod recording;
pub mod registry;
pub mod reply;
pub mod sentences;
pub mod session;
pub mod speaker;
pub mod supervisor;
pub mod turn;

use std::time::Duration;

/// The pipeline's internal sample rate (listener output, speaker input).
pub const PIPELINE_RATE_HZ: u32 = 16_000;
/// Samples in one 20 ms frame at the pipeline rate.
pub const PIPELINE_FRAME_SAMPLES: usize = 320;

/// Channel capacities (items). Audio queues drop the oldest item when full; control channels
/// are small because their producers are paced by the conversation.
pub mod capacity {
    /// Caller audio waiting for the listener: 1 s of 20 ms frames.
    pub const INGRESS_FRAMES: usize = 50;
    /// Listener events waiting for the conversation.
    pub const LISTENER_EVENTS: usize = 64;
    /// Commands waiting for the speaker.
    pub const SPEAKER_COMMANDS: usize = 16;
    /// Speech chunks and commands waiting for playout (chunks of any length).
    pub const PLAYOUT_INPUT: usize = 64;
    /// Playout events waiting for the conversation.
    pub const PLAYOUT_EVENTS: usize = 64;
    /// Call-control requests (hang-up, transfer) for the supervisor.
    pub const CONTROL: usize = 4;
}

/// What the listener hears, timestamped from the start of the call.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerEvent {
    /// The caller started speaking.
    SpeechStarted { at: Duration },
    /// The caller stopped speaking.
    SpeechEnded { at: Duration },
    /// An interim hypothesis of the current utterance.
    Partial { text: String, at: Duration },
    /// The final transcript of an utterance.
    Final { text: String, confidence: f32, start: Duration, end: Duration },
    /// The final transcript the utterance will have if the caller stays silent: the final pass
    /// ran speculatively during the VAD's hangover. Its `Final` follows (same text) when the
    /// VAD ends the utterance, or never if the caller speaks again first.
    Tentative { text: String, confidence: f32 },
    /// The caller spoke again after a `Tentative` transcript, before the VAD ended the
    /// utterance: that transcript will not be final.
    SpeechResumed,
    /// A DTMF key.
    Dtmf { digit: char, at: Duration },
    /// The end-of-turn model's probability that the caller has finished (when enabled).
    TurnHint { complete: f32, at: Duration },
    /// A steady tone (an answering machine's beep) ended the caller's audio so far.
    Beep { hz: f32, at: Duration },
}

/// Identifies one agent utterance across speaker, playout and conversation.
pub type UtteranceId = u64;

/// What the conversation asks the speaker.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeakerCommand {
    /// Synthesize `text` as (part of) utterance `utterance_id`; `last` closes the utterance.
    Say { utterance_id: UtteranceId, text: String, last: bool },
    /// Stop synthesizing at once (barge-in).
    Cancel,
}

/// Audio for playout: 16 kHz PCM of one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechChunk {
    pub utterance_id: UtteranceId,
    pub pcm: Vec<i16>,
    /// The utterance is complete after this chunk.
    pub last: bool,
}

/// Playout's inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutCommand {
    /// Queue speech.
    Speak(SpeechChunk),
    /// Drop everything queued and tell the gateway to drop its buffer (barge-in).
    Clear,
    /// The gateway echoed a mark: the audio before it has been played.
    MarkPlayed(String),
}

/// What playout did with an utterance: the exact record the conversation truncates history by.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutEvent {
    /// The first frame of the utterance left.
    Started { utterance_id: UtteranceId, at: Duration },
    /// The last frame left and its mark was sent; `sent_ms` of audio went out.
    Sent { utterance_id: UtteranceId, sent_ms: u64 },
    /// The gateway confirmed (mark echo) that the whole utterance was played.
    Played { utterance_id: UtteranceId, played_ms: u64 },
    /// Cut by `Clear`: `sent_ms` had left; `played_ms` is what the gateway had confirmed or,
    /// without a mark echo, what was sent (real-time pacing keeps the two within a frame).
    Cleared { utterance_id: UtteranceId, sent_ms: u64, played_ms: u64 },
}

/// What the conversation asks of the call as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum CallControl {
    Hangup { reason: String },
    Transfer { to: String },
}
