//! The turn state machine: when the caller has finished, when they interrupt, when to say
//! "mm-hmm", when to remind and hang up. Pure and I/O-free: `handle(event, now) -> effects`,
//! with timers as effects, so every rule is unit-tested on a simulated clock.
//!
//! Times are [`Duration`]s from the start of the call. Speech events are dated by the VAD (a
//! start back-dated to the first voiced frame, an end dated to the first silent frame), so the
//! machine measures speech and silence as the caller produced them, not as they were detected.
//!
//! Rules (each has its tests below):
//! - **Endpointing.** After the caller stops, the turn ends once they have been silent for
//!   [`endpoint_delay`]: it depends on `sttMode` (`accurate` waits [`ACCURATE_EXTRA`] longer for
//!   its stronger final pass) and on what was said — shorter after a complete sentence, longer
//!   after "my number is…", digits (unless one or two of them end a question: "instead of
//!   7?"), or a trailing "and"/"um". A semantic end-of-turn model may
//!   hint (`TurnHint`) and overrides the text heuristic. The turn is handed on only once its
//!   final transcript is in and the agent is not speaking.
//! - **Barge-in.** While the agent speaks (or when the agent starts while the caller is
//!   already speaking, counting from the agent's start), caller speech interrupts only after lasting
//!   [`barge_in_after`]`(interruptionSensitivity)`: 0 = never; 1 = the first detected speech
//!   frame; in between `(1 − s) × 1.5 s` (default 0.8 → 300 ms). Speech lasting exactly the
//!   threshold counts. Below [`BACKCHANNEL_INTERRUPTS_FROM`], words decide: an utterance whose
//!   words are all backchannel ("yeah", "uh-huh", "okay") never interrupts and is dropped; so at
//!   the threshold, with no words recognised yet, the machine waits up to [`BACKCHANNEL_GRACE`]
//!   more for a partial transcript (interrupting at once on real words), and speech that ended
//!   past the threshold before any words were known is judged by its final transcript.
//! - **False-interruption recovery.** If no words arrive within [`FALSE_INTERRUPTION_WINDOW`] of a
//!   barge-in and the caller is silent by then, the interruption was noise: the agent resumes
//!   the cut utterance where it stopped. If the sound is still going on at the window's end, or
//!   its final transcript is still to come, the machine looks again every
//!   [`FALSE_INTERRUPTION_RECHECK`]: once it has ended and its final transcript came back without
//!   words, the agent resumes then.
//! - **Backchannel** (`enableBackchannel`): after [`BACKCHANNEL_MIN_TURN`] of caller speech in one
//!   turn, a pause of [`BACKCHANNEL_PAUSE`] (with the sentence not complete) earns one cue, never
//!   while the caller is speaking, at most one per [`BACKCHANNEL_MIN_GAP`].
//! - **Silence** (`maxSilenceMs`): counted from the last time either party spoke, paused while
//!   anyone speaks; a reminder at 2/3 of it (once per silent stretch, if configured), and hang-up
//!   with end reason `silence-timeout` at the full length.
//! - **DTMF**: keys are caller input; they interrupt the agent (unless sensitivity is 0) and
//!   become a turn at `#` or after [`DTMF_INTERDIGIT`] without another key.

use std::time::Duration;

use crate::agent::{AgentConfig, SttMode};

/// Longest wait for the stronger final pass of `sttMode: accurate`.
pub const ACCURATE_EXTRA: Duration = Duration::from_millis(200);
/// Barge-in speech needed at sensitivity 0+ (scaled by `1 − s`).
pub const BARGE_IN_SPAN: Duration = Duration::from_millis(1500);
/// From this sensitivity up, backchannel words interrupt like any speech.
pub const BACKCHANNEL_INTERRUPTS_FROM: f64 = 0.9;
/// At moderate sensitivity, how much longer than the threshold a barge-in waits for words.
pub const BACKCHANNEL_GRACE: Duration = Duration::from_millis(300);
/// A barge-in with no words within this window is treated as noise and undone.
pub const FALSE_INTERRUPTION_WINDOW: Duration = Duration::from_millis(1500);
/// After the window, while the wordless sound goes on (or its final transcript is still to come),
/// how often the machine looks again.
pub const FALSE_INTERRUPTION_RECHECK: Duration = Duration::from_millis(250);
/// Caller speech in a turn before a backchannel cue is due.
pub const BACKCHANNEL_MIN_TURN: Duration = Duration::from_secs(4);
/// The pause that invites a backchannel cue.
pub const BACKCHANNEL_PAUSE: Duration = Duration::from_millis(300);
/// At most one backchannel cue per this long.
pub const BACKCHANNEL_MIN_GAP: Duration = Duration::from_secs(5);
/// A DTMF entry ends after this long without another key.
pub const DTMF_INTERDIGIT: Duration = Duration::from_millis(2000);

/// What the machine needs of the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnConfig {
    pub stt_mode: SttMode,
    /// 0 … 1; see [`barge_in_after`].
    pub interruption_sensitivity: f64,
    pub enable_backchannel: bool,
    pub max_silence: Duration,
    /// Whether a reminder is said before the silence hang-up.
    pub silence_reminder: bool,
    /// How late the VAD reports the end of speech (its hangover): a barge-in's grace for words
    /// waits this much longer, so a short "yeah" has ended before it is judged.
    pub speech_end_delay: Duration,
}

impl TurnConfig {
    pub fn from_agent(agent: &AgentConfig) -> Self {
        Self {
            stt_mode: agent.stt_mode,
            interruption_sensitivity: agent.interruption_sensitivity,
            enable_backchannel: agent.enable_backchannel,
            max_silence: Duration::from_millis(agent.max_silence_ms.max(0) as u64),
            silence_reminder: true,
            speech_end_delay: Duration::ZERO,
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            stt_mode: SttMode::Fast,
            interruption_sensitivity: 0.8,
            enable_backchannel: false,
            max_silence: Duration::from_secs(30),
            silence_reminder: true,
            speech_end_delay: Duration::ZERO,
        }
    }
}

/// How long caller speech must last to interrupt the agent; `None` = never.
pub fn barge_in_after(sensitivity: f64) -> Option<Duration> {
    if sensitivity <= 0.0 {
        None
    } else if sensitivity >= 1.0 {
        Some(Duration::ZERO)
    } else {
        Some(BARGE_IN_SPAN.mul_f64(1.0 - sensitivity))
    }
}

/// How finished an utterance sounds from its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Ends a sentence (".", "?", "!") and nothing suggests more is coming.
    Complete,
    /// No cue either way.
    Neutral,
    /// Mid-thought: a trailing conjunction or filler, a list of digits, "my number is…".
    Incomplete,
}

const CONTINUATION_WORDS: &[&str] = &[
    "and", "or", "but", "so", "because", "um", "uh", "er", "erm", "hmm", "like", "the", "a", "an", "to",
    "my", "is", "was", "of", "with", "for", "then", "if", "that", "which", "your", "our", "at", "in", "on",
];
const CONTINUATION_PHRASES: &[&str] = &["number is", "address is", "email is", "name is", "it's", "it is"];
const BACKCHANNEL_WORDS: &[&str] = &[
    "yeah", "yes", "yep", "yup", "uh-huh", "uh", "huh", "mm-hmm", "mhm", "mm", "hmm", "okay", "ok", "right",
    "sure", "alright", "i", "see", "got", "it",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'').to_lowercase())
        .filter(|w| !w.is_empty())
}

/// Whether every word of `text` is a backchannel ("yeah", "uh-huh", "okay, I see"); false when empty.
pub fn is_backchannel(text: &str) -> bool {
    let mut any = false;
    for w in words(text) {
        if !BACKCHANNEL_WORDS.contains(&w.as_str()) {
            return false;
        }
        any = true;
    }
    any
}

/// Judges an utterance's completeness from its text.
pub fn completeness(text: &str) -> Completeness {
    let trimmed = text.trim_end();
    if trimmed.is_empty() {
        return Completeness::Neutral;
    }
    if trimmed.ends_with("...") || trimmed.ends_with('…') || trimmed.ends_with(',') || trimmed.ends_with('-')
    {
        return Completeness::Incomplete;
    }
    let lower = trimmed.trim_end_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    // Digits are a number being read out, unless one or two of them end a question ("instead
    // of 7?"): read-out numbers are longer, and uptalk over them is common ("555?").
    if lower.ends_with(|c: char| c.is_ascii_digit()) {
        let digits = lower
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == ' ' || *c == '-')
            .filter(char::is_ascii_digit)
            .count();
        if !(trimmed.ends_with('?') && digits <= 2) {
            return Completeness::Incomplete;
        }
    }
    if CONTINUATION_PHRASES.iter().any(|p| lower.ends_with(p)) {
        return Completeness::Incomplete;
    }
    if let Some(last) = words(&lower).last() {
        if CONTINUATION_WORDS.contains(&last.as_str()) {
            return Completeness::Incomplete;
        }
    }
    if trimmed.ends_with(['.', '?', '!']) {
        Completeness::Complete
    } else {
        Completeness::Neutral
    }
}

/// The silence that ends a turn, by `sttMode` and how finished the caller sounds.
pub fn endpoint_delay(mode: SttMode, completeness: Completeness) -> Duration {
    let base = match completeness {
        Completeness::Complete => Duration::from_millis(300),
        Completeness::Neutral => Duration::from_millis(600),
        Completeness::Incomplete => Duration::from_millis(1400),
    };
    match mode {
        SttMode::Fast => base,
        SttMode::Accurate => base + ACCURATE_EXTRA,
    }
}

/// The machine's timers; at most one of each is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    Endpoint,
    BargeIn,
    FalseInterruption,
    Backchannel,
    SilenceReminder,
    SilenceHangup,
    DtmfFlush,
}

impl TimerKind {
    pub const ALL: [TimerKind; 7] = [
        TimerKind::Endpoint,
        TimerKind::BargeIn,
        TimerKind::FalseInterruption,
        TimerKind::Backchannel,
        TimerKind::SilenceReminder,
        TimerKind::SilenceHangup,
        TimerKind::DtmfFlush,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// Where a caller turn came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    Speech,
    Dtmf,
}

/// Why an interruption counter moves (`switchboard_interruptions_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptionKind {
    BargeIn,
    False,
    BackchannelIgnored,
}

impl InterruptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BargeIn => "barge_in",
            Self::False => "false",
            Self::BackchannelIgnored => "backchannel_ignored",
        }
    }
}

/// What happens in the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    SpeechStarted {
        at: Duration,
    },
    SpeechEnded {
        at: Duration,
    },
    Partial {
        text: String,
    },
    Final {
        text: String,
        confidence: f32,
        start: Duration,
        end: Duration,
    },
    /// A semantic end-of-turn model's probability that the caller has finished.
    TurnHint {
        complete: f32,
    },
    Dtmf {
        digit: char,
    },
    /// The agent's audio started leaving.
    AgentStarted,
    /// The agent's audio stopped (finished or cut).
    AgentStopped,
    Timeout(TimerKind),
}

/// A completed caller turn.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerTurn {
    pub text: String,
    pub source: InputSource,
    /// Lowest confidence of its utterances (1 for DTMF).
    pub confidence: f32,
    pub started: Duration,
    /// When the caller's last word ended.
    pub ended: Duration,
    /// When the machine decided the turn was over (`ended` + endpointing).
    pub decided: Duration,
}

/// What the machine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Arm (`Some`) or disarm (`None`) a timer; it comes back as `Event::Timeout(kind)`.
    Timer { kind: TimerKind, at: Option<Duration> },
    /// The caller finished a turn: answer it.
    EndOfTurn(CallerTurn),
    /// Stop the agent now: cancel synthesis, clear playout.
    Interrupt,
    /// The last interruption was noise: resume the cut utterance where it stopped.
    Resume,
    /// Say a short backchannel cue.
    Backchannel,
    /// Say the silence reminder.
    Remind,
    /// End the call.
    Hangup { reason: &'static str },
    /// Count an interruption outcome.
    Interruption(InterruptionKind),
}

/// Where a possible barge-in stands (caller speech while the agent talks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barge {
    Idle,
    /// Speech under way, the threshold not reached yet (timer armed).
    Timing,
    /// Past the threshold with no deciding words yet (grace timer armed, or none while the
    /// words so far are a backchannel).
    Grace,
    /// Speech ended past the threshold before any words were known: the final transcript decides.
    AwaitFinal,
}

/// The caller turn being collected.
#[derive(Debug, Clone, Default)]
struct TurnBuf {
    text: String,
    confidence: f32,
    started: Option<Duration>,
    ended: Duration,
    speech: Duration,
    /// Utterances ended whose final transcript has not arrived.
    awaiting_finals: u32,
    /// The endpoint silence has passed; waiting for transcripts or the agent.
    endpoint_due: bool,
    hint: Option<f32>,
    /// Speech started while the agent was talking (a barge-in candidate).
    over_agent: bool,
}

/// What the words so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Words {
    None,
    Backchannel,
    Real,
}

/// The turn state machine of one call.
#[derive(Debug)]
pub struct TurnMachine {
    cfg: TurnConfig,
    barge_in: Option<Duration>,
    barge: Barge,
    deadlines: [Option<Duration>; 7],
    caller_speaking: bool,
    speech_start: Duration,
    partial: String,
    turn: TurnBuf,
    agent_speaking: bool,
    /// A barge-in awaiting proof that it carried words.
    interrupted: bool,
    last_backchannel: Option<Duration>,
    last_activity: Duration,
    reminded: bool,
    digits: String,
    digits_started: Duration,
    ended: bool,
}

impl TurnMachine {
    /// A machine for a call that starts at `now` (the silence clock starts with it).
    pub fn new(cfg: TurnConfig, now: Duration) -> (Self, Vec<Effect>) {
        let mut m = Self {
            barge_in: barge_in_after(cfg.interruption_sensitivity),
            barge: Barge::Idle,
            cfg,
            deadlines: [None; 7],
            caller_speaking: false,
            speech_start: Duration::ZERO,
            partial: String::new(),
            turn: TurnBuf { confidence: 1.0, ..TurnBuf::default() },
            agent_speaking: false,
            interrupted: false,
            last_backchannel: None,
            last_activity: now,
            reminded: false,
            digits: String::new(),
            digits_started: Duration::ZERO,
            ended: false,
        };
        let mut fx = Vec::new();
        m.arm_silence(&mut fx);
        (m, fx)
    }

    pub fn config(&self) -> &TurnConfig {
        &self.cfg
    }

    /// Whether the caller is speaking (per the VAD).
    pub fn caller_speaking(&self) -> bool {
        self.caller_speaking
    }

    /// The pending deadline of a timer, if armed.
    pub fn deadline(&self, kind: TimerKind) -> Option<Duration> {
        self.deadlines[kind.index()]
    }

    /// Feeds one event at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.ended {
            return fx;
        }
        match event {
            Event::SpeechStarted { at } => self.on_speech_started(at, now, &mut fx),
            Event::SpeechEnded { at } => self.on_speech_ended(at, now, &mut fx),
            Event::Partial { text } => self.on_partial(text, now, &mut fx),
            Event::Final { text, confidence, start, end } => {
                self.on_final(text, confidence, start, end, now, &mut fx)
            }
            Event::TurnHint { complete } => {
                self.turn.hint = Some(complete);
                if !self.caller_speaking && self.turn.started.is_some() && !self.turn.endpoint_due {
                    self.arm_endpoint(&mut fx);
                    self.try_end_turn(now, &mut fx);
                }
            }
            Event::Dtmf { digit } => self.on_dtmf(digit, now, &mut fx),
            Event::AgentStarted => {
                // Pauses the silence clock; the reminder itself must not restart it.
                self.agent_speaking = true;
                self.arm_silence(&mut fx);
                if self.caller_speaking {
                    // The agent started over the caller: their overlap counts as a barge-in.
                    self.barge_in_from(now, &mut fx);
                }
            }
            Event::AgentStopped => {
                self.agent_speaking = false;
                if !self.reminded {
                    self.last_activity = now;
                }
                self.arm_silence(&mut fx);
                self.try_end_turn(now, &mut fx);
            }
            Event::Timeout(kind) => self.on_timeout(kind, now, &mut fx),
        }
        fx
    }

    fn set(&mut self, kind: TimerKind, at: Option<Duration>, fx: &mut Vec<Effect>) {
        if self.deadlines[kind.index()] != at {
            self.deadlines[kind.index()] = at;
            fx.push(Effect::Timer { kind, at });
        }
    }

    /// Someone spoke: the silence clock restarts and stays off while they do.
    fn touch(&mut self, now: Duration, fx: &mut Vec<Effect>) {
        self.last_activity = now;
        self.reminded = false;
        self.arm_silence(fx);
    }

    fn arm_silence(&mut self, fx: &mut Vec<Effect>) {
        if self.caller_speaking || self.agent_speaking {
            self.set(TimerKind::SilenceReminder, None, fx);
            self.set(TimerKind::SilenceHangup, None, fx);
            return;
        }
        let max = self.cfg.max_silence;
        let reminder =
            (self.cfg.silence_reminder && !self.reminded).then(|| self.last_activity + max * 2 / 3);
        self.set(TimerKind::SilenceReminder, reminder, fx);
        self.set(TimerKind::SilenceHangup, Some(self.last_activity + max), fx);
    }

    fn on_speech_started(&mut self, at: Duration, now: Duration, fx: &mut Vec<Effect>) {
        self.caller_speaking = true;
        self.speech_start = at;
        self.partial.clear();
        if self.turn.started.is_none() {
            self.turn.started = Some(at);
        }
        self.turn.endpoint_due = false;
        self.set(TimerKind::Endpoint, None, fx);
        self.set(TimerKind::Backchannel, None, fx);
        self.touch(now, fx);
        if self.agent_speaking {
            self.barge_in_from(at, fx);
        }
    }

    /// Caller and agent both speak since `from`: an interruption once it lasts the threshold.
    fn barge_in_from(&mut self, from: Duration, fx: &mut Vec<Effect>) {
        self.turn.over_agent = true;
        match self.barge_in {
            None => {}
            Some(d) if d.is_zero() => self.interrupt(from, fx),
            Some(d) => {
                self.barge = Barge::Timing;
                self.set(TimerKind::BargeIn, Some(from + d), fx);
            }
        }
    }

    fn on_speech_ended(&mut self, at: Duration, now: Duration, fx: &mut Vec<Effect>) {
        if !self.caller_speaking {
            return;
        }
        self.caller_speaking = false;
        let spoke = at.saturating_sub(self.speech_start);
        self.turn.speech += spoke;
        self.turn.ended = at;
        self.turn.awaiting_finals += 1;
        // Speech that lasted exactly the threshold counts.
        if matches!(self.barge, Barge::Timing | Barge::Grace) {
            self.set(TimerKind::BargeIn, None, fx);
            self.barge = Barge::Idle;
            let past = self.barge_in.is_some_and(|d| spoke >= d);
            if self.agent_speaking && past {
                match self.words_verdict() {
                    Words::Real => self.interrupt(now, fx),
                    Words::Backchannel | Words::None if self.moderate() => self.barge = Barge::AwaitFinal,
                    _ => self.interrupt(now, fx),
                }
            }
        }
        self.touch(now, fx);
        self.arm_endpoint(fx);
        self.arm_backchannel(at, fx);
    }

    fn on_partial(&mut self, text: String, now: Duration, fx: &mut Vec<Effect>) {
        self.partial = text;
        if self.barge == Barge::Grace && self.caller_speaking && self.words_verdict() == Words::Real {
            self.interrupt(now, fx);
        }
        if self.caller_speaking && !self.partial.trim().is_empty() && self.interrupted {
            // Words: the interruption was real.
            self.interrupted = false;
            self.set(TimerKind::FalseInterruption, None, fx);
        }
    }

    fn on_final(
        &mut self,
        text: String,
        confidence: f32,
        start: Duration,
        end: Duration,
        now: Duration,
        fx: &mut Vec<Effect>,
    ) {
        self.turn.awaiting_finals = self.turn.awaiting_finals.saturating_sub(1);
        let text = text.trim();
        let backchannel_only = is_backchannel(text);
        if self.barge == Barge::AwaitFinal {
            self.barge = Barge::Idle;
            if self.agent_speaking && !text.is_empty() && !backchannel_only {
                self.interrupt(now, fx);
                // Words arrived: a real interruption.
                self.interrupted = false;
                self.set(TimerKind::FalseInterruption, None, fx);
            }
        }
        if !text.is_empty() && self.interrupted && !backchannel_only {
            self.interrupted = false;
            self.set(TimerKind::FalseInterruption, None, fx);
        }
        let over_agent = self.turn.over_agent && (self.agent_speaking || self.interrupted);
        if over_agent && backchannel_only && self.cfg.interruption_sensitivity < BACKCHANNEL_INTERRUPTS_FROM {
            // "Yeah" while the agent talks: acknowledged, not a turn.
            fx.push(Effect::Interruption(InterruptionKind::BackchannelIgnored));
            self.drop_turn_if_empty_otherwise(fx);
            return;
        }
        if !text.is_empty() {
            if !self.turn.text.is_empty() {
                self.turn.text.push(' ');
            }
            self.turn.text.push_str(text);
            self.turn.confidence = self.turn.confidence.min(confidence);
            if self.turn.started.is_none() {
                self.turn.started = Some(start);
            }
            self.turn.ended = self.turn.ended.max(end);
        }
        if !self.caller_speaking && !self.turn.endpoint_due {
            self.arm_endpoint(fx);
        }
        self.try_end_turn(now, fx);
        if self.turn.text.is_empty() && self.turn.awaiting_finals == 0 && !self.caller_speaking {
            // Noise, no words: nothing to answer.
            self.reset_turn(fx);
        }
    }

    /// After an ignored backchannel: forget it unless real words were collected before it.
    fn drop_turn_if_empty_otherwise(&mut self, fx: &mut Vec<Effect>) {
        if self.turn.text.is_empty() && self.turn.awaiting_finals == 0 && !self.caller_speaking {
            self.reset_turn(fx);
        }
    }

    fn reset_turn(&mut self, fx: &mut Vec<Effect>) {
        self.turn = TurnBuf { confidence: 1.0, ..TurnBuf::default() };
        self.set(TimerKind::Endpoint, None, fx);
        self.set(TimerKind::Backchannel, None, fx);
    }

    /// Below [`BACKCHANNEL_INTERRUPTS_FROM`]: words decide barge-ins.
    fn moderate(&self) -> bool {
        self.cfg.interruption_sensitivity < BACKCHANNEL_INTERRUPTS_FROM
    }

    /// What the current utterance's words say about a barge-in.
    fn words_verdict(&self) -> Words {
        if self.partial.trim().is_empty() {
            Words::None
        } else if is_backchannel(&self.partial) {
            Words::Backchannel
        } else {
            Words::Real
        }
    }

    fn interrupt(&mut self, now: Duration, fx: &mut Vec<Effect>) {
        if !self.agent_speaking {
            return;
        }
        self.agent_speaking = false;
        self.interrupted = true;
        self.barge = Barge::Idle;
        fx.push(Effect::Interrupt);
        fx.push(Effect::Interruption(InterruptionKind::BargeIn));
        self.set(TimerKind::BargeIn, None, fx);
        self.set(TimerKind::FalseInterruption, Some(now + FALSE_INTERRUPTION_WINDOW), fx);
    }

    /// The words of the caller turn collected so far (final transcripts only).
    pub fn turn_text(&self) -> &str {
        &self.turn.text
    }

    fn text_so_far(&self) -> String {
        let mut t = self.turn.text.clone();
        if !self.partial.is_empty() && self.turn.awaiting_finals > 0 {
            if !t.is_empty() {
                t.push(' ');
            }
            t.push_str(&self.partial);
        }
        t
    }

    fn completeness_now(&self) -> Completeness {
        match self.turn.hint {
            Some(p) if p >= 0.7 => Completeness::Complete,
            Some(p) if p <= 0.2 => Completeness::Incomplete,
            _ => completeness(&self.text_so_far()),
        }
    }

    fn arm_endpoint(&mut self, fx: &mut Vec<Effect>) {
        if self.turn.started.is_none() {
            return;
        }
        let delay = endpoint_delay(self.cfg.stt_mode, self.completeness_now());
        self.set(TimerKind::Endpoint, Some(self.turn.ended + delay), fx);
    }

    fn arm_backchannel(&mut self, pause_from: Duration, fx: &mut Vec<Effect>) {
        if !self.cfg.enable_backchannel || self.agent_speaking || self.turn.speech < BACKCHANNEL_MIN_TURN {
            return;
        }
        if self.last_backchannel.is_some_and(|t| pause_from < t + BACKCHANNEL_MIN_GAP) {
            return;
        }
        if self.completeness_now() == Completeness::Complete {
            return;
        }
        self.set(TimerKind::Backchannel, Some(pause_from + BACKCHANNEL_PAUSE), fx);
    }

    /// Hands the turn on if its silence has passed, its transcripts are in and the agent is quiet.
    fn try_end_turn(&mut self, now: Duration, fx: &mut Vec<Effect>) {
        let due = self.turn.endpoint_due || self.deadline(TimerKind::Endpoint).is_some_and(|d| now >= d);
        if !due || self.caller_speaking || self.turn.started.is_none() {
            return;
        }
        self.turn.endpoint_due = true;
        self.set(TimerKind::Endpoint, None, fx);
        if self.turn.awaiting_finals > 0 || self.agent_speaking || self.turn.text.is_empty() {
            return;
        }
        let turn = std::mem::replace(&mut self.turn, TurnBuf { confidence: 1.0, ..TurnBuf::default() });
        self.set(TimerKind::Backchannel, None, fx);
        self.interrupted = false;
        self.set(TimerKind::FalseInterruption, None, fx);
        fx.push(Effect::EndOfTurn(CallerTurn {
            text: turn.text,
            source: InputSource::Speech,
            confidence: turn.confidence,
            started: turn.started.unwrap_or(turn.ended),
            ended: turn.ended,
            decided: now,
        }));
    }

    fn on_dtmf(&mut self, digit: char, now: Duration, fx: &mut Vec<Effect>) {
        if self.agent_speaking && self.barge_in.is_some() {
            self.interrupt(now, fx);
            // A key is deliberate: never "false".
            self.interrupted = false;
            self.set(TimerKind::FalseInterruption, None, fx);
        }
        self.touch(now, fx);
        if digit == '#' {
            self.flush_digits(now, fx);
            return;
        }
        if self.digits.is_empty() {
            self.digits_started = now;
        }
        self.digits.push(digit);
        self.set(TimerKind::DtmfFlush, Some(now + DTMF_INTERDIGIT), fx);
    }

    fn flush_digits(&mut self, now: Duration, fx: &mut Vec<Effect>) {
        self.set(TimerKind::DtmfFlush, None, fx);
        if self.digits.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.digits);
        fx.push(Effect::EndOfTurn(CallerTurn {
            text,
            source: InputSource::Dtmf,
            confidence: 1.0,
            started: self.digits_started,
            ended: now,
            decided: now,
        }));
    }

    fn on_timeout(&mut self, kind: TimerKind, now: Duration, fx: &mut Vec<Effect>) {
        // Stale or early wake-ups are ignored: the machine's own deadline is the truth.
        match self.deadline(kind) {
            Some(d) if now >= d => {}
            _ => return,
        }
        self.deadlines[kind.index()] = None;
        match kind {
            TimerKind::Endpoint => {
                self.turn.endpoint_due = true;
                self.try_end_turn(now, fx);
            }
            TimerKind::BargeIn => {
                if !(self.caller_speaking && self.agent_speaking) {
                    self.barge = Barge::Idle;
                    return;
                }
                match (self.words_verdict(), self.moderate(), self.barge) {
                    (Words::Real, _, _) | (_, false, _) => self.interrupt(now, fx),
                    // "yeah" so far: hold; a later partial or the final decides.
                    (Words::Backchannel, true, _) => self.barge = Barge::Grace,
                    (Words::None, true, Barge::Timing) => {
                        self.barge = Barge::Grace;
                        let grace = BACKCHANNEL_GRACE + self.cfg.speech_end_delay;
                        self.set(TimerKind::BargeIn, Some(now + grace), fx);
                    }
                    (Words::None, true, _) => self.interrupt(now, fx),
                }
            }
            TimerKind::FalseInterruption => {
                if self.interrupted && (self.caller_speaking || self.turn.awaiting_finals > 0) {
                    // Still sounding, or its words still being transcribed: words clear the
                    // timer when they come; look again until then.
                    self.set(TimerKind::FalseInterruption, Some(now + FALSE_INTERRUPTION_RECHECK), fx);
                } else if self.interrupted && self.turn.text.is_empty() {
                    self.interrupted = false;
                    self.reset_turn(fx);
                    fx.push(Effect::Interruption(InterruptionKind::False));
                    fx.push(Effect::Resume);
                }
            }
            TimerKind::Backchannel => {
                if !self.caller_speaking && !self.agent_speaking {
                    self.last_backchannel = Some(now);
                    fx.push(Effect::Backchannel);
                }
            }
            TimerKind::SilenceReminder => {
                if !self.caller_speaking && !self.agent_speaking {
                    self.reminded = true;
                    fx.push(Effect::Remind);
                }
            }
            TimerKind::SilenceHangup => {
                if !self.caller_speaking && !self.agent_speaking {
                    self.ended = true;
                    for k in TimerKind::ALL {
                        self.set(k, None, fx);
                    }
                    fx.push(Effect::Hangup { reason: "silence-timeout" });
                }
            }
            TimerKind::DtmfFlush => self.flush_digits(now, fx),
        }
    }
}

#[cfg(test)]
#[path = "turn_tests.rs"]
mod tests;
