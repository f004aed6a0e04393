//! Conversation: the turn-taking brain of a call. Listener events and playout records in;
//! text to speak, barge-in cancels and call control out.
//!
//! The turn state machine, the LLM and the webhook fill it in the next issues. Today it runs the
//! diagnostics loopback mode's controls: any DTMF key clears playout (a barge-in), `0` hangs up,
//! and `*` transfers to the `transferTo` start parameter — so tests can drive every control
//! path end to end.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CallControl, ListenerEvent, PlayoutCommand, PlayoutEvent, SpeakerCommand};

/// How the call is driven.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Diagnostics: the caller's audio is played back.
    Loopback { transfer_to: Option<String> },
    /// An agent answers (filled by the next issues).
    Agent,
}

/// The conversation's connections.
pub struct ConversationIo {
    pub listener: mpsc::Receiver<ListenerEvent>,
    pub playout_events: mpsc::Receiver<PlayoutEvent>,
    pub speaker: mpsc::Sender<SpeakerCommand>,
    pub playout: mpsc::Sender<PlayoutCommand>,
    pub control: mpsc::Sender<CallControl>,
}

/// Runs until cancelled or the listener is gone.
pub async fn run(mode: Mode, mut io: ConversationIo, cancel: CancellationToken) {
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => break,
            ev = io.listener.recv() => {
                let Some(ev) = ev else { break };
                if !on_listener_event(&mode, ev, &io).await {
                    break;
                }
            }
            ev = io.playout_events.recv() => {
                let Some(ev) = ev else { break };
                tracing::debug!(?ev, "conversation: playout");
            }
        }
    }
}

/// False when the call is ending.
async fn on_listener_event(mode: &Mode, ev: ListenerEvent, io: &ConversationIo) -> bool {
    match (mode, ev) {
        (Mode::Loopback { transfer_to }, ListenerEvent::Dtmf { digit, .. }) => {
            let control = match digit {
                '0' => Some(CallControl::Hangup { reason: "caller pressed 0 in loopback mode".into() }),
                '*' => transfer_to.clone().map(|to| CallControl::Transfer { to }),
                _ => None,
            };
            match control {
                Some(c) => io.control.send(c).await.is_ok(),
                None => {
                    let _ = io.speaker.send(SpeakerCommand::Cancel).await;
                    io.playout.send(PlayoutCommand::Clear).await.is_ok()
                }
            }
        }
        (_, ev) => {
            tracing::debug!(?ev, "conversation: listener");
            true
        }
    }
}
