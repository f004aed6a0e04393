//! Speaker: text in, 16 kHz speech out as [`SpeechChunk`]s tagged with their utterance.
//!
//! The interface is final; text-to-speech engines (and the voice-speed stage) fill it in the
//! "thinking and speaking" issue. Until then `Say` is acknowledged in the log and produces no
//! audio, and `Cancel` has nothing to stop.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PlayoutCommand, SpeakerCommand};

/// The speaker's connections.
pub struct SpeakerIo {
    pub commands: mpsc::Receiver<SpeakerCommand>,
    /// Where synthesized speech goes.
    pub playout: mpsc::Sender<PlayoutCommand>,
}

/// Runs until cancelled or the conversation is gone.
pub async fn run(mut io: SpeakerIo, cancel: CancellationToken) {
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let cmd = tokio::select! {
            biased;
            () = &mut cancelled => break,
            cmd = io.commands.recv() => cmd,
        };
        match cmd {
            None => break,
            Some(SpeakerCommand::Say { utterance_id, text, last }) => {
                tracing::debug!(utterance_id, chars = text.len(), last, "speaker: no TTS engine yet");
            }
            Some(SpeakerCommand::Cancel) => {}
        }
    }
    drop(io.playout);
}
