//! The call supervisor: spawns and owns a call's listener, conversation and speaker actors and
//! sets up playout (whose clock the session drives, as it owns the socket), wired with bounded
//! channels; ends them all together; writes the call record's end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conversation::{self, ConversationIo, Mode};
use super::listener::{Ingress, Listener, ListenerIo};
use super::listening::ListeningSetup;
use super::playout::{Playout, PlayoutDriver};
use super::queue::{self, Producer};
use super::recorder::Recorder;
use super::speaker::{self, SpeakerIo};
use super::{capacity, CallControl};
use crate::agent::{DenoisingMode, SttMode};
use crate::audio::vad::VadConfig;
use crate::metrics::Metrics;
use crate::providers::stt::SttQuality;
use crate::providers::Engines;
use crate::store::{CallStatus, Store};
use crate::transport::WireFormat;

/// How long the actors get to wind down once told to stop.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot set up the audio path: {0}")]
    Setup(String),
}

/// The session's ends of a running call.
pub struct CallHandles {
    /// Playout, clocked by the session (which owns the socket it writes to).
    pub playout_driver: PlayoutDriver,
    /// Caller audio and DTMF into the listener (never blocks; drops the oldest when full).
    pub ingress: Producer<Ingress>,
    /// Hang-up and transfer requests from the conversation.
    pub control: mpsc::Receiver<CallControl>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// What a call's actors are built from besides the mode and the wire format.
pub struct CallSetup<'a> {
    pub call_id: &'a str,
    pub store: &'a Store,
    pub engines: &'a Arc<Engines>,
    pub metrics: &'a Arc<Metrics>,
    /// Where written turns are published for live-transcript subscribers.
    pub feed: &'a super::registry::TranscriptFeed,
}

/// Spawns the actors of one call.
pub fn spawn(mode: Mode, format: WireFormat, setup: CallSetup<'_>) -> Result<CallHandles, SupervisorError> {
    let metrics = setup.metrics;
    let call_start = Instant::now();
    let listening = match &mode {
        Mode::Agent(call) => Some(ListeningSetup {
            denoise: call.config.denoising_mode.into(),
            silero: setup.engines.silero.clone(),
            vad: VadConfig::default(),
            stt: setup.engines.stt.clone(),
            language: call.config.language.clone(),
            final_quality: match call.config.stt_mode {
                SttMode::Fast => SttQuality::Final,
                SttMode::Accurate => SttQuality::Accurate,
            },
            smart_turn: setup.engines.smart_turn.clone(),
        }),
        // Denoise and VAD as an agent call with the default `denoisingMode` would; nothing to
        // transcribe for.
        Mode::Loopback { listen: true, .. } => Some(ListeningSetup {
            denoise: DenoisingMode::default().into(),
            silero: setup.engines.silero.clone(),
            vad: VadConfig::default(),
            stt: None,
            language: String::new(),
            final_quality: SttQuality::Final,
            smart_turn: None,
        }),
        Mode::Loopback { listen: false, .. } => None,
    };
    let listener = Listener::new(format, call_start, metrics, listening)
        .map_err(|e| SupervisorError::Setup(e.to_string()))?;
    let playout =
        Playout::new(format, call_start, metrics).map_err(|e| SupervisorError::Setup(e.to_string()))?;
    let mut playout = playout;
    if let Mode::Agent(call) = &mode {
        playout.set_ambient(call.config.ambient_sound);
    }

    let (ingress_tx, ingress_rx) = queue::bounded(capacity::INGRESS_FRAMES, metrics.dropped("ingress"));
    let (listener_tx, listener_rx) = mpsc::channel(capacity::LISTENER_EVENTS);
    let (speaker_tx, speaker_rx) = mpsc::channel(capacity::SPEAKER_COMMANDS);
    let (playout_tx, playout_rx) = mpsc::channel(capacity::PLAYOUT_INPUT);
    let (playout_ev_tx, playout_ev_rx) = mpsc::channel(capacity::PLAYOUT_EVENTS);
    let (control_tx, control_rx) = mpsc::channel(capacity::CONTROL);

    let cancel = CancellationToken::new();
    let loopback = matches!(mode, Mode::Loopback { .. }).then(|| playout_tx.clone());
    let (recorder, recorder_task, voice) = match &mode {
        Mode::Agent(call) => {
            let (recorder, task) =
                Recorder::spawn(setup.store.clone(), setup.call_id.to_string(), setup.feed.clone());
            let voice = speaker::Voice {
                tts: setup.engines.tts.clone(),
                engine_voice: setup.engines.engine_voice(&call.config.voice),
                speed: call.config.voice_speed,
            };
            (Some(recorder), Some(task), Some(voice))
        }
        Mode::Loopback { listen: true, .. } => {
            let (recorder, task) =
                Recorder::spawn(setup.store.clone(), setup.call_id.to_string(), setup.feed.clone());
            (Some(recorder), Some(task), None)
        }
        Mode::Loopback { listen: false, .. } => (None, None, None),
    };
    let mut tasks = vec![
        tokio::spawn(
            listener.run(ListenerIo { ingress: ingress_rx, events: listener_tx, loopback }, cancel.clone()),
        ),
        tokio::spawn(conversation::run(
            mode,
            ConversationIo {
                listener: listener_rx,
                playout_events: playout_ev_rx,
                speaker: speaker_tx,
                playout: playout_tx.clone(),
                control: control_tx,
                recorder,
                metrics: metrics.clone(),
                call_start,
            },
            cancel.clone(),
        )),
        tokio::spawn(speaker::run(
            voice,
            SpeakerIo { commands: speaker_rx, playout: playout_tx.clone(), metrics: metrics.clone() },
            cancel.clone(),
        )),
    ];
    // Ends when the conversation (its only writer) has; joined with the rest, so every record
    // is written before the call's end is.
    tasks.extend(recorder_task);
    let playout_driver = PlayoutDriver::new(playout, playout_rx, playout_ev_tx, metrics);
    drop(playout_tx);
    Ok(CallHandles { playout_driver, ingress: ingress_tx, control: control_rx, cancel, tasks })
}

impl CallHandles {
    /// Stops every actor and waits for them together, at most [`STOP_GRACE`]; stragglers are
    /// aborted.
    pub async fn stop(self) {
        self.cancel.cancel();
        drop(self.ingress);
        let mut tasks = self.tasks;
        let all = futures_util::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
            tracing::warn!("call actors did not stop in time; aborted");
            for task in &tasks {
                task.abort();
            }
        }
    }
}

/// Writes the end of a call record (once; a call already ended keeps its first outcome).
pub async fn finish(store: &Store, call_id: &str, status: CallStatus, reason: &str) {
    match store.end_call(call_id, status, reason).await {
        Ok(true) => tracing::info!(call_id, status = status.as_str(), reason, "call ended"),
        Ok(false) => tracing::debug!(call_id, "call had already ended"),
        Err(e) => tracing::error!(call_id, error = %e, "could not write the end of the call record"),
    }
}
