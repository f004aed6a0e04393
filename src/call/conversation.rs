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
//! **Preemptive replies.** When the listener reports a [`ListenerEvent::Tentative`] transcript
//! (its final pass ran during the VAD's hangover) and the agent is quiet, the language model is
//! asked at once with the turn as it would read, before the turn is decided. Its output is held
//! unspoken; when the turn ends with exactly that text (and nothing else changed), the held
//! reply is adopted — the model's time to first text overlaps the end-of-turn silence. If the
//! caller speaks again or the turn reads differently, the reply is dropped (cancelling
//! generation) and a fresh one is asked as usual. Only the LLM responder preempts: a webhook
//! would see a message for a turn that may never happen.
//!
//! Loopback diagnostics mode has its own controls: any DTMF key clears playout (a barge-in),
//! `0` hangs up, and `*` transfers to the `transferTo` start parameter. With `listen` on, the
//! listener also denoises and runs the VAD on the caller's audio, and the speech events it
//! reports are written to the call record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorder::Recorder;
use super::reply::{HistoryItem, ReplyAction, ReplyEvent, ReplyRequest, SharedResponder, Speaker};
use super::sentences::sentences;
use super::sentences::SentenceChunker;
use super::turn::{
    is_backchannel, CallerTurn, Effect, Event, InputSource, TimerKind, TurnConfig, TurnMachine,
};
use super::{CallControl, ListenerEvent, PlayoutCommand, PlayoutEvent, SpeakerCommand, UtteranceId};
use crate::agent::{AgentConfig, VoiceMode};
use crate::audio::vad::VadConfig;
use crate::metrics::Metrics;
use crate::store::NewTurn;

/// What the agent says when the caller has been silent for 2/3 of `maxSilenceMs`.
pub const SILENCE_REMINDER: &str = "Are you still there?";
/// The backchannel cue.
pub const BACKCHANNEL_CUE: &str = "Mm-hmm.";

/// What the agent says after a caller's goodbye (or `end_call` without a line).
pub const GOODBYE: &str = "Thank you for calling. Goodbye!";
/// What the agent says before a transfer (when the model gave no line).
pub const HANDOFF: &str = "Let me transfer you now. Please hold.";
/// Said when a reply has not started speaking after the filler delay.
pub const FILLER: &str = "One moment, please.";
/// Said when the reply failed before anything was spoken.
pub const FALLBACK: &str = "I'm sorry, I'm having trouble answering right now. Could you say that again?";
/// After the last frame of a goodbye or handoff line has left, wait this long (the gateway's
/// buffer) before hanging up or transferring.
const CONTROL_AFTER_SPEECH: Duration = Duration::from_millis(300);
/// Hang up or transfer even when the line's audio never went out (its synthesis failed).
const CONTROL_DEADLINE: Duration = Duration::from_secs(15);
/// A reply stops after this many spoken pieces (sentences; the first may be a clause): phone
/// answers are short, and a small model may otherwise ramble until its token limit.
const MAX_REPLY_PIECES: usize = 4;
/// A beep counts as an answering machine's only while the caller has said at most this many
/// turns: a machine's greeting is a few sentences, and its pauses can end a turn between them
/// ("…can't take your call right now." | "Please leave a message after the tone.").
const MAX_GREETING_TURNS: i64 = 3;
/// Approximate speaking rate, to estimate how much of a cut sentence the caller heard.
const CHARS_PER_SECOND: f64 = 15.0;

/// How the call is driven.
#[derive(Clone)]
pub enum Mode {
    /// Diagnostics: the caller's audio is played back.
    Loopback {
        transfer_to: Option<String>,
        /// Also run the listening path (denoise → VAD, no speech-to-text) on the caller's audio
        /// and record its speech events: the media path of an agent call without the engines
        /// that answer (what the Pipecat side-by-side bench compares).
        listen: bool,
    },
    /// An agent answers.
    Agent(Box<AgentCall>),
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Loopback { transfer_to, listen } => {
                f.debug_struct("Loopback").field("transfer_to", transfer_to).field("listen", listen).finish()
            }
            Mode::Agent(a) => f.debug_tuple("Agent").field(&a.agent_id).finish(),
        }
    }
}

/// An agent's side of one call.
#[derive(Clone)]
pub struct AgentCall {
    pub call_id: String,
    pub agent_id: String,
    pub config: AgentConfig,
    /// `{{name}}` values: from, to, callId, agentName and the custom parameters.
    pub variables: Arc<BTreeMap<String, String>>,
    /// Who answers caller turns; `None`: turns are recorded, nobody replies.
    pub responder: Option<SharedResponder>,
    /// A reply silent for this long gets [`FILLER`].
    pub filler_after: Duration,
    /// Ask the model on tentative transcripts (LLM responders only).
    pub preemptive: bool,
    /// Sends the agent's text messages; `None`: they are only recorded.
    pub messenger: Option<Arc<super::messaging::Messenger>>,
    /// The gateway's answering-machine verdict (`machine_start`, `machine_end_beep`, `human`, …).
    pub answered_by: Option<String>,
}

impl AgentCall {
    /// A call of `config` with no responder (turn-taking only), for tests and diagnostics.
    pub fn listening_only(config: AgentConfig) -> Self {
        Self {
            call_id: String::new(),
            agent_id: String::new(),
            config,
            variables: Arc::default(),
            responder: None,
            filler_after: Duration::from_millis(1500),
            preemptive: false,
            messenger: None,
            answered_by: None,
        }
    }
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
        Mode::Loopback { transfer_to, .. } => run_loopback(transfer_to, io, cancel).await,
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
                let digit = match ev {
                    ListenerEvent::Dtmf { digit, .. } => digit,
                    ListenerEvent::SpeechStarted { at } | ListenerEvent::SpeechEnded { at } => {
                        let started = matches!(ev, ListenerEvent::SpeechStarted { .. });
                        let kind = if started { "speech_started" } else { "speech_ended" };
                        if let Some(r) = io.recorder.as_mut() {
                            r.event(kind, at.as_millis() as u64, None);
                        }
                        continue;
                    }
                    _ => continue,
                };
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
    /// The begin message and replies: hold the floor, resumed after a false interruption, kept
    /// in the history.
    Speech,
    /// The silence reminder, the filler, goodbye and handoff lines: hold the floor; not resumed.
    Reminder,
    /// "Mm-hmm": never holds the floor (the caller keeps it).
    Backchannel,
}

struct Utterance {
    id: UtteranceId,
    text: String,
    kind: SayKind,
}

/// The reply being generated or spoken for the latest caller turn.
struct ActiveReply {
    events: mpsc::Receiver<ReplyEvent>,
    /// The caller turn it answers (0: the agent opens the call).
    seq: i64,
    chunker: SentenceChunker,
    /// When the responder was asked.
    asked: Duration,
    /// End of the caller's speech it answers (turn latency counts from here).
    turn_ended: Duration,
    /// The first text has arrived.
    got_text: bool,
    /// Its first utterance, to time the first audio frame.
    first_utterance: Option<UtteranceId>,
    /// Say [`FILLER`] at this time unless speech has started.
    filler_at: Option<Duration>,
    /// A barge-in paused it: new pieces wait here until a resume (or are dropped by a new turn).
    paused: bool,
    held: Vec<String>,
    /// All text received, for the call record.
    text: String,
    /// Pieces handed to the speaker (or held).
    pieces: usize,
    /// The stream has ended.
    done: bool,
    /// Started on a tentative transcript: not adopted yet.
    preempt: Option<Preempt>,
}

/// A reply asked before its turn was decided; its events wait here.
struct Preempt {
    /// The caller turn it answers, as predicted.
    text: String,
    /// The history it was asked with (the current one plus what a barge-in let the caller hear).
    history: Vec<HistoryItem>,
    buffered: Vec<ReplyEvent>,
}

/// A hang-up or transfer waiting for the agent's last line to be heard.
struct AfterSpeech {
    utterance: UtteranceId,
    control: CallControl,
    /// When to carry it out (set once the line has been sent).
    at: Duration,
}

/// Agent mode: the turn machine, the replies and what they ask for.
pub struct AgentConversation {
    call: AgentCall,
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
    /// Text of history-bearing utterances that started playing, until sent or cut.
    playing: HashMap<UtteranceId, String>,
    /// What the caller heard of sentences a barge-in cut; enters the history unless resumed.
    heard_of_cut: Vec<String>,
    /// The agent holds the floor (as told to the machine).
    holding_floor: bool,
    turn_seq: i64,
    hung_up: bool,
    /// The conversation so far, as the caller heard it.
    history: Vec<HistoryItem>,
    /// The last history item is the agent's and still growing.
    agent_turn_open: bool,
    reply: Option<ActiveReply>,
    after_speech: Option<AfterSpeech>,
    /// The voicemail message is being left.
    voicemail: bool,
}

impl AgentConversation {
    pub fn new(call: AgentCall, io: ConversationIo) -> Self {
        let now = io.call_start.elapsed();
        let cfg = TurnConfig {
            speech_end_delay: Duration::from_millis(u64::from(VadConfig::default().hangover_ms)),
            ..TurnConfig::from_agent(&call.config)
        };
        let (machine, fx) = TurnMachine::new(cfg, now);
        let mut conv = Self {
            call,
            io,
            machine,
            timers: [None; TimerKind::ALL.len()],
            next_utterance: 1,
            outstanding: VecDeque::new(),
            cut_through: 0,
            cut: Vec::new(),
            playing: HashMap::new(),
            heard_of_cut: Vec::new(),
            holding_floor: false,
            turn_seq: 0,
            hung_up: false,
            history: Vec::new(),
            agent_turn_open: false,
            reply: None,
            after_speech: None,
            voicemail: false,
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

    /// The earliest of the machine's timers, the filler and a pending hang-up/transfer.
    fn next_wake(&self) -> Option<Duration> {
        let filler = self.reply.as_ref().and_then(|r| r.filler_at);
        let after = self.after_speech.as_ref().map(|a| a.at);
        self.timers.iter().flatten().copied().chain(filler).chain(after).min()
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let machine = self.call.answered_by.as_deref().unwrap_or_default();
        if machine.starts_with("machine_end") || machine == "fax" {
            // The machine's greeting and beep are over: leave the message now.
            let now = self.now();
            self.leave_voicemail(now, "gateway").await;
        } else if machine.starts_with("machine") {
            // The machine is greeting: wait for its beep (or the end of its greeting).
        } else {
            if let Some(r) = &self.call.responder {
                r.warm(&self.call.call_id);
            }
            self.open().await;
        }
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        while !self.hung_up {
            let wake = self.next_wake().map(|d| self.io.call_start + d);
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let reply = async {
                match self.reply.as_mut().filter(|r| !r.done) {
                    Some(r) => r.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = timer => self.on_timer().await,
                ev = self.io.listener.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_listener(ev).await;
                }
                ev = self.io.playout_events.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_playout(ev).await;
                }
                ev = reply => self.on_reply(ev).await,
            }
        }
    }

    /// The agent's first words: the begin message, or the model's opening.
    async fn open(&mut self) {
        match self.call.config.begin_message.clone().filter(|m| !m.trim().is_empty()) {
            Some(greeting) => {
                self.say(&greeting, SayKind::Speech).await;
            }
            // Hosted agents without a begin message let the model open the call.
            None if self.call.config.voice_mode == VoiceMode::Hosted => {
                let now = self.now();
                self.start_reply(0, String::new(), 1.0, now).await;
            }
            None => {}
        }
    }

    /// An answering machine took the call: stop, say `voicemailMessage` (if any), hang up.
    async fn leave_voicemail(&mut self, now: Duration, by: &str) {
        if self.voicemail {
            return;
        }
        self.voicemail = true;
        self.record("voicemail", now, Some(json!({"detectedBy": by})));
        self.reply = None;
        if !self.outstanding.is_empty() {
            let _ = self.io.speaker.send(SpeakerCommand::Cancel).await;
            let _ = self.io.playout.send(PlayoutCommand::Clear).await;
            self.cut_through = self.next_utterance - 1;
            self.outstanding.clear();
        }
        self.cut.clear();
        self.after_speech = None;
        if self.holding_floor {
            self.holding_floor = false;
            self.feed(Event::AgentStopped).await;
        }
        let hangup = CallControl::Hangup { reason: "voicemail".into() };
        match self.call.config.voicemail_message.clone().filter(|m| !m.trim().is_empty()) {
            Some(message) => self.finish_with(&message, hangup, now).await,
            None => self.control(hangup, now).await,
        }
    }

    async fn on_timer(&mut self) {
        let now = self.now();
        for kind in TimerKind::ALL {
            if self.timers[kind as usize].is_some_and(|d| d <= now) {
                self.timers[kind as usize] = None;
                self.feed(Event::Timeout(kind)).await;
            }
        }
        if let Some(r) = self.reply.as_mut() {
            if r.filler_at.is_some_and(|d| d <= now) {
                r.filler_at = None;
                self.record("filler", now, None);
                self.say(FILLER, SayKind::Reminder).await;
            }
        }
        if self.after_speech.as_ref().is_some_and(|a| a.at <= now) {
            if let Some(a) = self.after_speech.take() {
                self.control(a.control, now).await;
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
                // The caller goes on: a reply asked on the turn so far is moot.
                self.drop_preempted("caller-resumed");
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
                    Some(json!({"text": text, "confidence": confidence, "startMs": start.as_millis() as u64,
                               "arrivedMs": self.now().as_millis() as u64})),
                );
                Event::Final { text, confidence, start, end }
            }
            ListenerEvent::Tentative { text, confidence } => {
                self.preempt(text, confidence).await;
                return;
            }
            ListenerEvent::SpeechResumed => {
                self.drop_preempted("caller-resumed");
                return;
            }
            ListenerEvent::TurnHint { complete, at } => {
                self.record("turn_hint", at, Some(json!({"complete": complete})));
                Event::TurnHint { complete }
            }
            ListenerEvent::Dtmf { digit, at } => {
                self.record("dtmf", at, Some(json!({"digit": digit.to_string()})));
                Event::Dtmf { digit }
            }
            ListenerEvent::Beep { hz, at } => {
                self.record("beep", at, Some(json!({"hz": hz})));
                // A beep at the start of the call, after at most a greeting's worth of turns: a
                // machine. Later in a conversation, a tone is not a reason to hang up on a person.
                if self.turn_seq <= MAX_GREETING_TURNS {
                    self.leave_voicemail(self.now(), "beep").await;
                }
                return;
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
                if kind == SayKind::Speech {
                    self.playing.insert(utterance_id, text);
                }
                if let Some(r) = self.reply.as_mut().filter(|r| r.first_utterance == Some(utterance_id)) {
                    let latency = at.saturating_sub(r.turn_ended);
                    let (seq, asked) = (r.seq, r.asked);
                    if seq > 0 {
                        self.io.metrics.turn_latency_seconds.observe(latency.as_secs_f64());
                    }
                    tracing::info!(
                        seq,
                        latency_ms = latency.as_millis() as u64,
                        "first agent audio of the reply"
                    );
                    self.record(
                        "reply_audio",
                        at,
                        Some(json!({"seq": seq, "latencyMs": latency.as_millis() as u64,
                                    "sinceAskedMs": at.saturating_sub(asked).as_millis() as u64})),
                    );
                }
                if kind != SayKind::Backchannel && !self.holding_floor {
                    self.holding_floor = true;
                    self.feed(Event::AgentStarted).await;
                }
            }
            PlayoutEvent::Sent { utterance_id, sent_ms } => {
                if let Some(a) = self.after_speech.as_mut().filter(|a| a.utterance == utterance_id) {
                    a.at = now + CONTROL_AFTER_SPEECH;
                }
                if utterance_id <= self.cut_through {
                    return;
                }
                self.outstanding.retain(|u| u.id != utterance_id);
                if let Some(text) = self.playing.remove(&utterance_id) {
                    self.heard(text);
                }
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
                if let Some(a) = self.after_speech.as_mut().filter(|a| a.utterance == utterance_id) {
                    a.at = now;
                }
                if let Some(text) = self.playing.remove(&utterance_id) {
                    if let Some(part) = heard_part(&text, played_ms, self.call.config.voice_speed) {
                        self.heard_of_cut.push(part);
                    }
                }
                self.record(
                    "agent_cut",
                    now,
                    Some(json!({"utterance": utterance_id, "sentMs": sent_ms, "playedMs": played_ms})),
                );
            }
        }
    }

    /// The caller heard `text` (a whole sentence, or the part before a cut).
    fn heard(&mut self, text: String) {
        heard_into(&mut self.history, &mut self.agent_turn_open, text);
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
                // The rest of the reply waits: a false interruption resumes it.
                if let Some(r) = self.reply.as_mut() {
                    r.paused = true;
                    r.filler_at = None;
                }
                // The machine already knows the agent stopped.
                self.holding_floor = false;
            }
            Effect::Resume => {
                self.record("agent_resumed", now, None);
                self.heard_of_cut.clear(); // the cut sentences are said again in full
                for text in std::mem::take(&mut self.cut) {
                    self.say(&text, SayKind::Speech).await;
                }
                if let Some(r) = self.reply.as_mut() {
                    r.paused = false;
                    let held = std::mem::take(&mut r.held);
                    self.speak_pieces(held).await;
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
                self.control(CallControl::Hangup { reason: reason.to_string() }, now).await;
            }
            Effect::Interruption(kind) => {
                self.io.metrics.interruption(kind.as_str());
                self.record(kind.as_str(), now, None);
            }
        }
    }

    /// Hangs up or transfers now.
    async fn control(&mut self, control: CallControl, now: Duration) {
        match &control {
            CallControl::Hangup { reason } => {
                self.record("hangup", now, Some(json!({"reason": reason})));
                self.hung_up = true;
            }
            CallControl::Transfer { to } => self.record("transfer", now, Some(json!({"to": to}))),
        }
        let _ = self.io.control.send(control).await;
    }

    /// A caller turn is complete: record it and ask the responder for the reply.
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
                transcript: turn.text.clone(),
                source,
                confidence: f64::from(turn.confidence),
                started_ms: turn.started.as_millis() as i64,
                ended_ms: turn.ended.as_millis() as i64,
            });
        }
        if self.after_speech.is_some() || self.voicemail {
            return; // hanging up or transferring: no more replies
        }
        if self.call.answered_by.as_deref().is_some_and(|m| m.starts_with("machine")) {
            // The machine's greeting ended without a beep we could hear: leave the message now.
            Box::pin(self.leave_voicemail(turn.decided, "gateway")).await;
            return;
        }
        // The new turn supersedes a reply still pending (dropping it cancels generation).
        if self.reply.as_ref().is_some_and(|r| r.preempt.is_none()) {
            if let Some(old) = self.reply.take().filter(|r| !r.done) {
                self.record_response(old.seq, &old.text);
            }
        }
        for part in std::mem::take(&mut self.heard_of_cut) {
            self.heard(part);
        }
        self.cut.clear();
        if self.adopt_preempted(&turn).await {
            return;
        }
        let seq = self.turn_seq;
        self.start_reply(seq, turn.text, turn.confidence, turn.ended).await;
    }

    /// A tentative transcript arrived: ask the model now, unless anything could make the
    /// answer differ from the one the decided turn would get.
    async fn preempt(&mut self, text: String, confidence: f32) {
        let quiet = !self.hung_up
            && !self.voicemail
            && self.after_speech.is_none()
            && !self.holding_floor
            && self.outstanding.is_empty()
            && !self.call.answered_by.as_deref().is_some_and(|m| m.starts_with("machine"));
        let llm = self.call.preemptive && self.call.responder.as_ref().is_some_and(|r| r.name() == "llm");
        // A reply a barge-in paused counts as superseded: these words make the interruption real.
        let free = self.reply.as_ref().is_none_or(|r| r.done || r.paused || r.preempt.is_some());
        let mut predicted = self.machine.turn_text().to_string();
        if !predicted.is_empty() {
            predicted.push(' ');
        }
        predicted.push_str(text.trim());
        if !(quiet && llm && free) || is_backchannel(&predicted) {
            return;
        }
        self.drop_preempted("superseded");
        if let Some(old) = self.reply.take().filter(|r| !r.done) {
            self.record_response(old.seq, &old.text);
        }
        // The history the decided turn will be answered with.
        let mut history = self.history.clone();
        let mut open = self.agent_turn_open;
        for part in &self.heard_of_cut {
            heard_into(&mut history, &mut open, part.clone());
        }
        let now = self.now();
        self.record("reply_preempted", now, Some(json!({"text": predicted})));
        let seq = self.turn_seq + 1;
        self.ask(seq, predicted, confidence, now, Some(history));
    }

    /// Drops a preemptively asked reply (dropping its stream cancels generation).
    fn drop_preempted(&mut self, why: &str) {
        if self.reply.as_ref().is_some_and(|r| r.preempt.is_some()) {
            self.reply = None;
            self.io.metrics.preemptive_reply("dropped");
            let now = self.now();
            self.record("reply_preempt_dropped", now, Some(json!({"why": why})));
        }
    }

    /// The turn ended: if a reply was asked for exactly this turn, speak it. True if adopted.
    async fn adopt_preempted(&mut self, turn: &CallerTurn) -> bool {
        let matches = self
            .reply
            .as_ref()
            .and_then(|r| r.preempt.as_ref())
            .is_some_and(|p| p.text == turn.text && same_history(&p.history, &self.history));
        if !matches {
            self.drop_preempted("turn-differs");
            return false;
        }
        let now = self.now();
        let Some(r) = self.reply.as_mut() else { return false };
        let Some(p) = r.preempt.take() else { return false };
        r.turn_ended = turn.ended;
        if !r.got_text {
            r.filler_at = Some(now + self.call.filler_after);
        }
        self.io.metrics.preemptive_reply("used");
        self.history.push(HistoryItem { speaker: Speaker::Caller, text: p.text, at: now_rfc3339() });
        self.agent_turn_open = false;
        for ev in p.buffered {
            self.on_reply(Some(ev)).await;
        }
        true
    }

    /// Asks the responder to answer `caller_text` (empty: open the call).
    async fn start_reply(&mut self, seq: i64, caller_text: String, confidence: f32, turn_ended: Duration) {
        self.ask(seq, caller_text, confidence, turn_ended, None);
    }

    /// Starts the reply. A preemptive one (asked with the `preempt` history it predicts) holds
    /// its events and leaves the history alone.
    fn ask(
        &mut self,
        seq: i64,
        caller_text: String,
        confidence: f32,
        turn_ended: Duration,
        preempt: Option<Vec<HistoryItem>>,
    ) {
        let Some(responder) = self.call.responder.clone() else { return };
        let req = ReplyRequest {
            call_id: self.call.call_id.clone(),
            agent_id: self.call.agent_id.clone(),
            history: preempt.clone().unwrap_or_else(|| self.history.clone()),
            caller_text: caller_text.clone(),
            confidence,
            variables: Arc::clone(&self.call.variables),
        };
        let preempt =
            preempt.map(|history| Preempt { text: caller_text.clone(), history, buffered: Vec::new() });
        if preempt.is_none() && !caller_text.trim().is_empty() {
            self.history.push(HistoryItem { speaker: Speaker::Caller, text: caller_text, at: now_rfc3339() });
            self.agent_turn_open = false;
        }
        let now = self.now();
        self.reply = Some(ActiveReply {
            events: responder.respond(req),
            seq,
            chunker: SentenceChunker::new(),
            asked: now,
            turn_ended,
            got_text: false,
            first_utterance: None,
            filler_at: preempt.is_none().then_some(now + self.call.filler_after),
            paused: false,
            held: Vec::new(),
            text: String::new(),
            pieces: 0,
            done: false,
            preempt,
        });
    }

    async fn on_reply(&mut self, ev: Option<ReplyEvent>) {
        let now = self.now();
        let Some(r) = self.reply.as_mut() else { return };
        if matches!(ev, Some(ReplyEvent::Text { .. })) && !r.got_text {
            r.got_text = true;
            let (seq, since) = (r.seq, now.saturating_sub(r.asked));
            if let Some(rec) = self.io.recorder.as_mut() {
                let detail = json!({"seq": seq, "sinceAskedMs": since.as_millis() as u64, "preemptive": r.preempt.is_some()});
                rec.event("reply_text", now.as_millis() as u64, Some(detail));
            }
            if self.call.responder.as_ref().is_some_and(|x| x.name() == "llm") {
                self.io.metrics.llm_ttft_seconds.observe(since.as_secs_f64());
            }
        }
        if let Some(p) = r.preempt.as_mut() {
            // Not adopted yet: hold everything (text, actions, the end) until the turn ends.
            let ev = ev.unwrap_or(ReplyEvent::Done);
            r.done = matches!(ev, ReplyEvent::Done | ReplyEvent::Failed { .. });
            p.buffered.push(ev);
            return;
        }
        match ev {
            Some(ReplyEvent::Text { text, flush }) => {
                r.text.push_str(&text);
                if flush {
                    r.text.push(' '); // streamed lines are separate sentences
                }
                let mut pieces = r.chunker.push(&text);
                if flush {
                    pieces.extend(r.chunker.finish());
                }
                self.speak_pieces(pieces).await;
            }
            Some(ReplyEvent::Action(action)) => {
                let pieces: Vec<String> = r.chunker.finish().into_iter().collect();
                self.speak_pieces(pieces).await;
                self.act(action, now).await;
            }
            Some(ReplyEvent::Done) | None => {
                let pieces: Vec<String> = r.chunker.finish().into_iter().collect();
                r.done = true;
                self.speak_pieces(pieces).await;
                if let Some(r) = self.reply.as_mut() {
                    r.filler_at = None;
                }
                if let Some((seq, text)) = self.reply.as_ref().map(|r| (r.seq, r.text.clone())) {
                    self.record_response(seq, &text);
                }
            }
            Some(ReplyEvent::Failed { provider, message }) => {
                r.done = true;
                r.filler_at = None;
                let spoke = r.first_utterance.is_some();
                let stage = self.call.responder.as_ref().map_or("reply", |x| x.name());
                self.io.metrics.provider_error(stage, provider);
                tracing::warn!(provider, error = %message, "reply failed");
                self.record("reply_failed", now, Some(json!({"provider": provider, "error": message})));
                if !spoke {
                    self.say(FALLBACK, SayKind::Reminder).await;
                }
            }
        }
    }

    /// Writes the reply's text as the response to its caller turn.
    fn record_response(&mut self, seq: i64, text: &str) {
        let text = speakable(text);
        if seq > 0 && !text.is_empty() {
            if let Some(rec) = self.io.recorder.as_mut() {
                rec.response(seq, text);
            }
        }
    }

    /// Says reply pieces (or holds them while a barge-in is being judged).
    async fn speak_pieces(&mut self, pieces: Vec<String>) {
        for piece in pieces {
            let piece = speakable(&piece);
            if piece.is_empty() {
                continue;
            }
            let Some(r) = self.reply.as_mut() else { return };
            if r.pieces >= MAX_REPLY_PIECES {
                if !r.done {
                    // Enough said: stop the reply (dropping its stream cancels generation).
                    r.done = true;
                    r.events = mpsc::channel(1).1;
                    let (seq, text) = (r.seq, r.text.clone());
                    self.record_response(seq, &text);
                }
                return;
            }
            r.pieces += 1;
            if r.paused {
                r.held.push(piece);
                continue;
            }
            r.filler_at = None;
            let id = self.say(&piece, SayKind::Speech).await;
            if let Some(r) = self.reply.as_mut() {
                if r.first_utterance.is_none() {
                    r.first_utterance = id;
                }
            }
        }
    }

    /// Carries out a reply's action once the text before it has been spoken.
    async fn act(&mut self, action: ReplyAction, now: Duration) {
        self.record("action", now, Some(json!({"action": format!("{action:?}")})));
        match action {
            ReplyAction::EndCall { goodbye } => {
                let line = goodbye.unwrap_or_else(|| GOODBYE.to_string());
                self.finish_with(&line, CallControl::Hangup { reason: "agent-hangup".into() }, now).await;
            }
            ReplyAction::Transfer { line } => {
                match self.call.config.transfer_number.clone().filter(|n| !n.is_empty()) {
                    Some(to) => {
                        let line = line.unwrap_or_else(|| HANDOFF.to_string());
                        self.finish_with(&line, CallControl::Transfer { to }, now).await;
                    }
                    None => tracing::warn!("transfer asked for, but the agent has no transferNumber"),
                }
            }
            ReplyAction::SendMessage { body } => match self.call.messenger.clone() {
                // Sent beside the call (stored first, then the provider): the talk goes on.
                Some(m) => {
                    self.record("send_message", now, Some(json!({"body": body})));
                    tokio::spawn(async move { m.send(&body).await });
                }
                None => {
                    tracing::warn!("send_message: this call cannot send messages");
                    self.record("send_message", now, Some(json!({"body": body, "status": "not-configured"})));
                }
            },
        }
    }

    /// Says `line`, then (once it has been sent) hangs up or transfers. Later reply text is dropped.
    async fn finish_with(&mut self, line: &str, control: CallControl, now: Duration) {
        if let Some(r) = self.reply.as_mut() {
            r.done = true;
            r.filler_at = None;
        }
        let last = self.say(line, SayKind::Reminder).await;
        match last {
            Some(id) => {
                self.after_speech = Some(AfterSpeech { utterance: id, control, at: now + CONTROL_DEADLINE });
            }
            None => self.control(control, now).await,
        }
    }

    /// Queues `text` for the speaker, one utterance per sentence; returns the last utterance id.
    async fn say(&mut self, text: &str, kind: SayKind) -> Option<UtteranceId> {
        let mut last = None;
        for sentence in sentences(text) {
            let id = self.next_utterance;
            self.next_utterance += 1;
            self.outstanding.push_back(Utterance { id, text: sentence.clone(), kind });
            let cmd = SpeakerCommand::Say { utterance_id: id, text: sentence, last: true };
            if self.io.speaker.send(cmd).await.is_err() {
                return last;
            }
            last = Some(id);
        }
        last
    }
}

/// Adds what the caller heard of the agent to `history` (extending the agent's open item).
fn heard_into(history: &mut Vec<HistoryItem>, agent_turn_open: &mut bool, text: String) {
    match history.last_mut() {
        Some(last) if *agent_turn_open && last.speaker == Speaker::Agent => {
            last.text.push(' ');
            last.text.push_str(&text);
        }
        _ => {
            history.push(HistoryItem { speaker: Speaker::Agent, text, at: now_rfc3339() });
            *agent_turn_open = true;
        }
    }
}

/// Two histories say the same (times aside).
fn same_history(a: &[HistoryItem], b: &[HistoryItem]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.speaker == y.speaker && x.text == y.text)
}

/// What the caller heard of `text` when it was cut after `played_ms` (estimated from the
/// speaking rate): the first words, marked as cut off; `None` when nothing was heard.
fn heard_part(text: &str, played_ms: u64, speed: f64) -> Option<String> {
    let total_ms = text.chars().count() as f64 * 1000.0 / (CHARS_PER_SECOND * speed.max(0.1));
    let fraction = played_ms as f64 / total_ms.max(1.0);
    if fraction >= 0.95 {
        return Some(text.to_string());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = (fraction * words.len() as f64).floor() as usize;
    (n > 0).then(|| format!("{}—", words[..n].join(" ")))
}

/// Drops markup a model may emit that should not be read aloud.
fn speakable(text: &str) -> String {
    let cleaned: String = text.chars().filter(|c| !matches!(c, '*' | '#' | '`')).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_part_follows_the_played_time() {
        // 60 characters at 15 chars/s = 4 s.
        let text = "one two three four five six seven eight nine ten eleven twel";
        assert_eq!(heard_part(text, 0, 1.0), None);
        assert_eq!(heard_part(text, 2000, 1.0).as_deref(), Some("one two three four five six—"));
        assert_eq!(heard_part(text, 3900, 1.0).as_deref(), Some(text));
        // Twice as fast: the same words in half the time.
        assert_eq!(heard_part(text, 1000, 2.0).as_deref(), Some("one two three four five six—"));
    }

    #[test]
    fn speakable_drops_markup() {
        assert_eq!(speakable("**Sure!** We open at `9`."), "Sure! We open at 9.");
        assert_eq!(speakable("# Title"), "Title");
    }
}

#[cfg(test)]
mod preempt_tests {
    //! Preemptive replies, driven event by event on a paused clock with a scripted responder.

    use std::sync::Mutex;

    use super::*;
    use crate::agent::{AmbientSound, DenoisingMode, ModelTier, SttMode};

    /// Remembers every request; answers each with `reply` (unless the reply is dropped first).
    struct Scripted {
        asked: Mutex<Vec<ReplyRequest>>,
        /// Per request: whether its receiver was dropped (generation cancelled).
        streams: Mutex<Vec<mpsc::Sender<ReplyEvent>>>,
        reply: &'static str,
    }

    impl Responder for Scripted {
        fn name(&self) -> &'static str {
            "llm"
        }
        fn respond(&self, req: ReplyRequest) -> mpsc::Receiver<ReplyEvent> {
            self.asked.lock().unwrap().push(req);
            let (tx, rx) = mpsc::channel(8);
            let reply = self.reply;
            let sender = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(ReplyEvent::Text { text: reply.into(), flush: false }).await;
                let _ = tx.send(ReplyEvent::Done).await;
            });
            self.streams.lock().unwrap().push(sender);
            rx
        }
    }

    use super::super::reply::Responder;

    struct Harness {
        listener: mpsc::Sender<ListenerEvent>,
        _playout_events: mpsc::Sender<PlayoutEvent>,
        speaker: mpsc::Receiver<SpeakerCommand>,
        responder: Arc<Scripted>,
        _playout: mpsc::Receiver<PlayoutCommand>,
        _control: mpsc::Receiver<CallControl>,
        cancel: CancellationToken,
        call_start: Instant,
    }

    fn agent() -> AgentConfig {
        AgentConfig {
            name: "A".into(),
            description: None,
            voice_mode: VoiceMode::Hosted,
            enable_messaging: false,
            model_tier: ModelTier::Balanced,
            system_prompt: None,
            begin_message: Some("Hello.".into()),
            voice: "joe".into(),
            transfer_number: None,
            voicemail_message: None,
            stt_mode: SttMode::Fast,
            ambient_sound: AmbientSound::None,
            denoising_mode: DenoisingMode::NoiseCancellation,
            max_silence_ms: 600_000,
            voice_speed: 1.0,
            interruption_sensitivity: 0.8,
            enable_backchannel: false,
            language: "en-US".into(),
        }
    }

    /// Starts a call whose greeting has been played in full.
    async fn start(preemptive: bool) -> Harness {
        let responder =
            Arc::new(Scripted { asked: Mutex::default(), streams: Mutex::default(), reply: "Sure thing." });
        let (listener_tx, listener) = mpsc::channel(16);
        let (playout_events_tx, playout_events) = mpsc::channel(16);
        let (speaker_tx, mut speaker) = mpsc::channel(16);
        let (playout, playout_rx) = mpsc::channel(16);
        let (control, control_rx) = mpsc::channel(16);
        let call_start = Instant::now();
        let io = ConversationIo {
            listener,
            playout_events,
            speaker: speaker_tx,
            playout,
            control,
            recorder: None,
            metrics: Arc::new(Metrics::new()),
            call_start,
        };
        let call = AgentCall {
            responder: Some(responder.clone() as SharedResponder),
            preemptive,
            ..AgentCall::listening_only(agent())
        };
        let cancel = CancellationToken::new();
        tokio::spawn(AgentConversation::new(call, io).run(cancel.clone()));
        let Some(SpeakerCommand::Say { utterance_id, .. }) = speaker.recv().await else { panic!("greeting") };
        let at = Duration::from_millis(100);
        playout_events_tx.send(PlayoutEvent::Started { utterance_id, at }).await.unwrap();
        playout_events_tx.send(PlayoutEvent::Sent { utterance_id, sent_ms: 600 }).await.unwrap();
        Harness {
            listener: listener_tx,
            _playout_events: playout_events_tx,
            speaker,
            responder,
            _playout: playout_rx,
            _control: control_rx,
            cancel,
            call_start,
        }
    }

    impl Harness {
        /// Sends `ev` at `ms` of media time.
        async fn send(&self, ms: u64, ev: ListenerEvent) {
            tokio::time::sleep_until(self.call_start + s(ms)).await;
            self.listener.send(ev).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        fn asked(&self) -> Vec<String> {
            self.responder.asked.lock().unwrap().iter().map(|r| r.caller_text.clone()).collect()
        }
        fn cancelled(&self) -> Vec<bool> {
            self.responder.streams.lock().unwrap().iter().map(|s| s.is_closed()).collect()
        }
        /// What the speaker was asked to say next (within `ms`).
        async fn said(&mut self, ms: u64) -> Option<String> {
            match tokio::time::timeout(Duration::from_millis(ms), self.speaker.recv()).await {
                Ok(Some(SpeakerCommand::Say { text, .. })) => Some(text),
                _ => None,
            }
        }
    }

    fn s(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn final_(text: &str, start: u64, end: u64) -> ListenerEvent {
        ListenerEvent::Final { text: text.into(), confidence: 0.9, start: s(start), end: s(end) }
    }

    fn tentative(text: &str) -> ListenerEvent {
        ListenerEvent::Tentative { text: text.into(), confidence: 0.9 }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_asked_on_the_tentative_transcript_is_spoken_when_the_turn_matches() {
        let mut h = start(true).await;
        h.send(1000, ListenerEvent::SpeechStarted { at: s(1000) }).await;
        h.send(2250, tentative("Can I book a table?")).await;
        assert_eq!(h.asked(), ["Can I book a table?"], "asked before the turn is decided");
        assert_eq!(h.said(200).await, None, "held until the turn ends");
        h.send(2300, ListenerEvent::SpeechEnded { at: s(2000) }).await;
        h.send(2300, final_("Can I book a table?", 1000, 2000)).await;
        assert_eq!(h.said(2000).await.as_deref(), Some("Sure thing."));
        assert_eq!(h.asked().len(), 1, "the held reply was used, not asked again");
        let req = h.responder.asked.lock().unwrap()[0].clone();
        assert_eq!(req.history.len(), 1, "the greeting, as heard");
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_who_goes_on_gets_a_fresh_reply_to_the_whole_turn() {
        let mut h = start(true).await;
        h.send(1000, ListenerEvent::SpeechStarted { at: s(1000) }).await;
        h.send(1700, tentative("I'd like")).await;
        h.send(1750, ListenerEvent::SpeechResumed).await;
        assert_eq!(h.cancelled(), [true], "dropped when the caller went on");
        h.send(3250, tentative("I'd like a table for two.")).await;
        h.send(3300, ListenerEvent::SpeechEnded { at: s(3000) }).await;
        // The listener's final differs from the last tentative (say, a later segment).
        h.send(3300, final_("I'd like a table for two, please.", 1000, 3000)).await;
        assert_eq!(h.said(2000).await.as_deref(), Some("Sure thing."));
        assert_eq!(h.asked(), ["I'd like", "I'd like a table for two.", "I'd like a table for two, please."]);
        assert!(h.cancelled()[1], "the mismatched reply was dropped");
        assert_eq!(h.said(300).await, None, "one reply spoken");
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn without_preemption_the_model_is_asked_once_the_turn_ends() {
        let mut h = start(false).await;
        h.send(1000, ListenerEvent::SpeechStarted { at: s(1000) }).await;
        h.send(2250, tentative("Can I book a table?")).await;
        assert!(h.asked().is_empty());
        h.send(2300, ListenerEvent::SpeechEnded { at: s(2000) }).await;
        h.send(2300, final_("Can I book a table?", 1000, 2000)).await;
        assert_eq!(h.said(2000).await.as_deref(), Some("Sure thing."));
        assert_eq!(h.asked(), ["Can I book a table?"]);
        h.cancel.cancel();
    }
}
