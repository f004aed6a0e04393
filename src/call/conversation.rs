//! Conversation: the turn-taking brain of a call. Listener events and playout records in;
//! text to speak, barge-in cancels and call control out.
//!
//! Agent mode drives the [`TurnMachine`](super::turn::TurnMachine): it feeds it the listener's
//! speech events and what playout reports of the agent's utterances, keeps its timers, and
//! carries out its effects — record the caller's turn, stop the agent on a barge-in (cancel
//! synthesis, clear playout), resume a falsely interrupted utterance, say a backchannel cue or
//! the silence reminder, hang up. Everything is written to the call record as it happens. The
//! agent's replies (LLM, webhook) plug in at [`AgentConversation::on_turn`] (next issue).
//!
//! The agent speaks one sentence per utterance, so playout's per-utterance record says exactly
//! which sentence a barge-in cut, and a resume restarts that sentence.
//!
//! Loopback diagnostics mode has its own controls: any DTMF key clears playout (a barge-in),
//! `0` hangs up, and `*` transfers to the `transferTo` start parameter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorder::Recorder;
use super::sentences::sentences;
use super::turn::{CallerTurn, Effect, Event, InputSource, TimerKind, TurnConfig, TurnMachine};
use super::{CallControl, ListenerEvent, PlayoutCommand, PlayoutEvent, SpeakerCommand, UtteranceId};
use crate::agent::AgentConfig;
use crate::audio::vad::VadConfig;
use crate::metrics::Metrics;
use crate::store::NewTurn;

/// What the agent says when the caller has been silent for 2/3 of `maxSilenceMs`.
pub const SILENCE_REMINDER: &str = "Are you still there?";
/// The backchannel cue.
pub const BACKCHANNEL_CUE: &str = "Mm-hmm.";

/// How the call is driven.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Diagnostics: the caller's audio is played back.
    Loopback { transfer_to: Option<String> },
    /// An agent answers.
    Agent(Box<AgentConfig>),
}

/// The conversation's connections.
pub struct ConversationIo {
    pub listener: mpsc::Receiver<ListenerEvent>,
    pub playout_events: mpsc::Receiver<PlayoutEvent>,
    pub speaker: mpsc::Sender<SpeakerCommand>,
    pub playout: mpsc::Sender<PlayoutCommand>,
    pub control: mpsc::Sender<CallControl>,
    /// Where turns and events are written (agent mode).
    pub recorder: Option<Recorder>,
    pub metrics: Arc<Metrics>,
    /// Time zero of the call (media timestamps count from it).
    pub call_start: Instant,
}

/// Runs until cancelled or the listener is gone.
pub async fn run(mode: Mode, io: ConversationIo, cancel: CancellationToken) {
    match mode {
        Mode::Loopback { transfer_to } => run_loopback(transfer_to, io, cancel).await,
        Mode::Agent(agent) => AgentConversation::new(*agent, io).run(cancel).await,
    }
}

async fn run_loopback(transfer_to: Option<String>, mut io: ConversationIo, cancel: CancellationToken) {
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => break,
            ev = io.listener.recv() => {
                let Some(ev) = ev else { break };
                let ListenerEvent::Dtmf { digit, .. } = ev else { continue };
                let control = match digit {
                    '0' => Some(CallControl::Hangup { reason: "agent hung up: caller pressed 0 in loopback mode".into() }),
                    '*' => transfer_to.clone().map(|to| CallControl::Transfer { to }),
                    _ => None,
                };
                let alive = match control {
                    Some(c) => io.control.send(c).await.is_ok(),
                    None => {
                        let _ = io.speaker.send(SpeakerCommand::Cancel).await;
                        io.playout.send(PlayoutCommand::Clear).await.is_ok()
                    }
                };
                if !alive {
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

/// Why the agent says something (what a barge-in may resume, what counts as holding the floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SayKind {
    /// The begin message and replies: hold the floor, resumed after a false interruption.
    Speech,
    /// The silence reminder: holds the floor; not resumed.
    Reminder,
    /// "Mm-hmm": never holds the floor (the caller keeps it).
    Backchannel,
}

struct Utterance {
    id: UtteranceId,
    text: String,
    kind: SayKind,
}

/// Agent mode: the turn machine and what it asks for.
pub struct AgentConversation {
    agent: AgentConfig,
    io: ConversationIo,
    machine: TurnMachine,
    /// Mirror of the machine's armed timers, to sleep until the earliest.
    timers: [Option<Duration>; TimerKind::ALL.len()],
    next_utterance: UtteranceId,
    /// Said and not yet finished (queued, synthesizing or playing), in order.
    outstanding: VecDeque<Utterance>,
    /// Utterances up to this id were cut by a barge-in; their late playout reports are ignored.
    cut_through: UtteranceId,
    /// What the last barge-in cut, to resume after a false interruption.
    cut: Vec<String>,
    /// The agent holds the floor (as told to the machine).
    holding_floor: bool,
    turn_seq: i64,
    hung_up: bool,
}

impl AgentConversation {
    pub fn new(agent: AgentConfig, io: ConversationIo) -> Self {
        let now = io.call_start.elapsed();
        let cfg = TurnConfig {
            speech_end_delay: Duration::from_millis(u64::from(VadConfig::default().hangover_ms)),
            ..TurnConfig::from_agent(&agent)
        };
        let (machine, fx) = TurnMachine::new(cfg, now);
        let mut conv = Self {
            agent,
            io,
            machine,
            timers: [None; TimerKind::ALL.len()],
            next_utterance: 1,
            outstanding: VecDeque::new(),
            cut_through: 0,
            cut: Vec::new(),
            holding_floor: false,
            turn_seq: 0,
            hung_up: false,
        };
        conv.mirror_timers(&fx);
        conv
    }

    fn now(&self) -> Duration {
        self.io.call_start.elapsed()
    }

    fn record(&mut self, kind: &str, at: Duration, detail: Option<serde_json::Value>) {
        if let Some(r) = self.io.recorder.as_mut() {
            r.event(kind, at.as_millis() as u64, detail);
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        if let Some(greeting) = self.agent.begin_message.clone().filter(|m| !m.trim().is_empty()) {
            self.say(&greeting, SayKind::Speech).await;
        }
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        while !self.hung_up {
            let wake = self.timers.iter().flatten().min().map(|d| self.io.call_start + *d);
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = timer => {
                    let now = self.now();
                    for kind in TimerKind::ALL {
                        if self.timers[kind as usize].is_some_and(|d| d <= now) {
                            self.timers[kind as usize] = None;
                            self.feed(Event::Timeout(kind)).await;
                        }
                    }
                }
                ev = self.io.listener.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_listener(ev).await;
                }
                ev = self.io.playout_events.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_playout(ev).await;
                }
            }
        }
    }

    fn mirror_timers(&mut self, fx: &[Effect]) {
        for e in fx {
            if let Effect::Timer { kind, at } = e {
                self.timers[*kind as usize] = *at;
            }
        }
    }

    async fn feed(&mut self, event: Event) {
        let now = self.now();
        let fx = self.machine.handle(event, now);
        self.mirror_timers(&fx);
        for e in fx {
            self.apply(e, now).await;
        }
    }

    async fn on_listener(&mut self, ev: ListenerEvent) {
        let event = match ev {
            ListenerEvent::SpeechStarted { at } => {
                self.record("speech_started", at, None);
                Event::SpeechStarted { at }
            }
            ListenerEvent::SpeechEnded { at } => {
                self.record("speech_ended", at, None);
                Event::SpeechEnded { at }
            }
            ListenerEvent::Partial { text, .. } => Event::Partial { text },
            ListenerEvent::Final { text, confidence, start, end } => {
                self.record(
                    "transcript",
                    end,
                    Some(
                        json!({"text": text, "confidence": confidence, "startMs": start.as_millis() as u64}),
                    ),
                );
                Event::Final { text, confidence, start, end }
            }
            ListenerEvent::TurnHint { complete, at } => {
                self.record("turn_hint", at, Some(json!({"complete": complete})));
                Event::TurnHint { complete }
            }
            ListenerEvent::Dtmf { digit, at } => {
                self.record("dtmf", at, Some(json!({"digit": digit.to_string()})));
                Event::Dtmf { digit }
            }
        };
        self.feed(event).await;
    }

    async fn on_playout(&mut self, ev: PlayoutEvent) {
        let now = self.now();
        match ev {
            PlayoutEvent::Started { utterance_id, at } => {
                if utterance_id <= self.cut_through {
                    return;
                }
                let Some(u) = self.outstanding.iter().find(|u| u.id == utterance_id) else { return };
                let (kind, text) = (u.kind, u.text.clone());
                self.record("agent_started", at, Some(json!({"utterance": utterance_id, "text": text})));
                if kind != SayKind::Backchannel && !self.holding_floor {
                    self.holding_floor = true;
                    self.feed(Event::AgentStarted).await;
                }
            }
            PlayoutEvent::Sent { utterance_id, sent_ms } => {
                if utterance_id <= self.cut_through {
                    return;
                }
                self.outstanding.retain(|u| u.id != utterance_id);
                self.record(
                    "agent_finished",
                    now,
                    Some(json!({"utterance": utterance_id, "sentMs": sent_ms})),
                );
                self.release_floor_if_done().await;
            }
            PlayoutEvent::Played { utterance_id, played_ms } => {
                tracing::debug!(utterance_id, played_ms, "utterance played");
            }
            PlayoutEvent::Cleared { utterance_id, sent_ms, played_ms } => {
                self.record(
                    "agent_cut",
                    now,
                    Some(json!({"utterance": utterance_id, "sentMs": sent_ms, "playedMs": played_ms})),
                );
            }
        }
    }

    /// Tells the machine the agent has stopped once nothing that holds the floor is pending.
    async fn release_floor_if_done(&mut self) {
        if self.holding_floor && self.outstanding.iter().all(|u| u.kind == SayKind::Backchannel) {
            self.holding_floor = false;
            self.feed(Event::AgentStopped).await;
        }
    }

    async fn apply(&mut self, effect: Effect, now: Duration) {
        match effect {
            Effect::Timer { .. } => {}
            Effect::EndOfTurn(turn) => self.on_turn(turn).await,
            Effect::Interrupt => {
                let _ = self.io.speaker.send(SpeakerCommand::Cancel).await;
                let _ = self.io.playout.send(PlayoutCommand::Clear).await;
                self.cut_through = self.next_utterance - 1;
                self.cut = self
                    .outstanding
                    .drain(..)
                    .filter(|u| u.kind == SayKind::Speech)
                    .map(|u| u.text)
                    .collect();
                // The machine already knows the agent stopped.
                self.holding_floor = false;
            }
            Effect::Resume => {
                self.record("agent_resumed", now, None);
                for text in std::mem::take(&mut self.cut) {
                    self.say(&text, SayKind::Speech).await;
                }
            }
            Effect::Backchannel => {
                self.record("backchannel", now, None);
                self.say(BACKCHANNEL_CUE, SayKind::Backchannel).await;
            }
            Effect::Remind => {
                self.record("silence_reminder", now, None);
                self.say(SILENCE_REMINDER, SayKind::Reminder).await;
            }
            Effect::Hangup { reason } => {
                self.record("hangup", now, Some(json!({"reason": reason})));
                self.hung_up = true;
                let _ = self.io.control.send(CallControl::Hangup { reason: reason.to_string() }).await;
            }
            Effect::Interruption(kind) => {
                self.io.metrics.interruption(kind.as_str());
                self.record(kind.as_str(), now, None);
            }
        }
    }

    /// A caller turn is complete: record it (the reply is the next issue's LLM or webhook).
    async fn on_turn(&mut self, turn: CallerTurn) {
        self.turn_seq += 1;
        let endpointing = turn.decided.saturating_sub(turn.ended);
        if turn.source == InputSource::Speech {
            self.io.metrics.endpointing_seconds.observe(endpointing.as_secs_f64());
        }
        let source = match turn.source {
            InputSource::Speech => "speech",
            InputSource::Dtmf => "dtmf",
        };
        tracing::info!(seq = self.turn_seq, source, chars = turn.text.len(), "caller turn");
        self.record(
            "turn",
            turn.decided,
            Some(json!({"seq": self.turn_seq, "text": turn.text, "endpointingMs": endpointing.as_millis() as u64})),
        );
        if let Some(r) = self.io.recorder.as_mut() {
            r.turn(NewTurn {
                seq: self.turn_seq,
                transcript: turn.text,
                source,
                confidence: f64::from(turn.confidence),
                started_ms: turn.started.as_millis() as i64,
                ended_ms: turn.ended.as_millis() as i64,
            });
        }
    }

    /// Queues `text` for the speaker, one utterance per sentence.
    async fn say(&mut self, text: &str, kind: SayKind) {
        for sentence in sentences(text) {
            let id = self.next_utterance;
            self.next_utterance += 1;
            self.outstanding.push_back(Utterance { id, text: sentence.clone(), kind });
            let cmd = SpeakerCommand::Say { utterance_id: id, text: sentence, last: true };
            if self.io.speaker.send(cmd).await.is_err() {
                return;
            }
        }
    }
}
