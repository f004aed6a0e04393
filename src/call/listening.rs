//! The listening path of an agent call, per 20 ms frame at 16 kHz: denoise (per `denoisingMode`)
//! → VAD (Silero when its weights are present, else webrtc-vad) → speech-to-text.
//!
//! The VAD decides on the denoised audio; speech-to-text is given the caller's original audio
//! over the same span (times the background gate's gain in the background-speech mode): Whisper
//! does better on it than on RNNoise's output (measured in `audio::denoise`'s module doc,
//! "What the recogniser hears").
//!
//! Speech-to-text never runs on the frame path: the utterance's audio is handed to the shared
//! engine (its own worker threads) and the result comes back as a future the listener polls
//! beside its inbox. While the caller speaks, partial hypotheses are re-decoded from the growing
//! utterance every [`PARTIAL_EVERY`] (first after [`FIRST_PARTIAL`]) when the engine is cheap
//! enough, one at a time; when the VAD ends the utterance, its final pass runs on the trimmed
//! audio (from [`PRE_ROLL`] before the first voiced frame to [`POST_ROLL`] after the last).
//!
//! **Speculative final pass.** The VAD ends speech only after its hangover (300 ms of silence),
//! but the audio the final pass needs is complete [`POST_ROLL`] after the last voiced frame. So
//! as soon as the caller has been silent that long, the final pass starts on exactly the audio
//! the real one would get. If the VAD then ends the utterance at that same frame, the
//! speculative result *is* the final transcript (arriving up to a hangover earlier); if the
//! caller speaks again first, it is dropped when it arrives (counted as a miss). The cost is one
//! extra pass per mid-utterance pause longer than [`POST_ROLL`].
//!
//! **When the words stop but the sound does not.** Where the background is itself speech (a
//! café's babble), the VAD may hear speech from the caller's first word to the end of the call,
//! and a turn that waits for the VAD never ends. The partial hypotheses say what the VAD cannot:
//! once they have got no further — about as many letters, the same last dozen ([`same_progress`]; an
//! empty partial after words counts as no further) — over [`WORDS_STILL`] more audio
//! ([`WORDS_STILL_COMPLETE`] when they end a sentence) while the
//! VAD still hears speech, the utterance ends where those words were complete (the audio of the
//! partial that first had them, plus [`STALL_MARGIN`] and [`POST_ROLL`]), and its final pass and
//! the turn follow as after a pause. The audio after that point goes on into a *quiet*
//! utterance: partials keep running on it, but nothing is announced until one of them has words
//! as loud as the caller's (within [`QUIET_LEVEL_MARGIN_DB`] of the [`speech_level_db`] of
//! their utterances with words: Whisper finds words in babble too) — then it becomes the caller's
//! next utterance, starting shortly before what the last empty partial heard (the audio before
//! is dropped). A quiet utterance keeps only its last
//! [`QUIET_KEEP`] once it passes [`QUIET_MAX`]. When the VAD ends one before any partial had
//! words, the audio after the last empty partial gets a final pass if it is as loud as the
//! caller, and is announced (start, end, transcript at once) only if it has words.
//!
//! The same goes for sound that never had words: an utterance whose partials have found none in
//! its first [`NO_WORDS`] of audio (pre-roll included) while the VAD still hears speech (babble
//! before the caller has said anything, say) ends as noise — `SpeechEnded` and an empty `Final`,
//! no final pass, so a barge-in it caused is undone — and the sound goes on as a quiet utterance,
//! never announced as starting before the noise ended. All this needs partials: the embedded
//! Whisper gives them, also beside a remote engine (`stt::split`); with a remote final-pass-only
//! engine alone (`--stt-partials false`) the turn waits for the VAD. After a cut, words in the
//! sound that follows are not announced before the cut utterance's final transcript is out, so
//! the turn its words make is decided first even when that pass is slower than a partial.
//!
//! Times are media time: the frame index × 20 ms, minus the denoiser's constant latency.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::turn::{completeness, Completeness};
use super::{ListenerEvent, PIPELINE_FRAME_SAMPLES};
use crate::audio::denoise::{DenoiseMode, Denoiser};
use crate::audio::tone::BeepDetector;
use crate::audio::vad::{SileroModel, Vad, VadConfig, VadEvent};
use crate::metrics::{KindLabels, Metrics};
use crate::providers::stt::{normalise_words, SharedStt, SttQuality, SttRequest, Transcription};
use crate::providers::turn_detect::SmartTurn;

/// Audio kept before the VAD's speech start (its start is back-dated; words begin softly).
pub const PRE_ROLL: Duration = Duration::from_millis(200);
/// Audio kept after the VAD's speech end.
pub const POST_ROLL: Duration = Duration::from_millis(100);
/// The first partial hypothesis after this much speech.
pub const FIRST_PARTIAL: Duration = Duration::from_millis(400);
/// Then one every this much new speech (while none is in flight).
pub const PARTIAL_EVERY: Duration = Duration::from_millis(500);
/// Partial hypotheses unchanged over this much more audio while the VAD still hears speech:
/// the caller's words have stopped (see the module doc).
pub const WORDS_STILL: Duration = Duration::from_millis(1200);
/// [`WORDS_STILL`] when the words end a sentence: in quiet such a turn ends after the VAD's
/// hangover (300 ms) and the turn machine's shortest endpoint (300 ms), and the partial that
/// first had the words heard up to a partial's cadence past the last of them.
pub const WORDS_STILL_COMPLETE: Duration = Duration::from_millis(1000);
/// A words-stopped cut keeps this much (plus [`POST_ROLL`]) after the audio of the partial that
/// first had the words: its last word may have been only begun there.
const STALL_MARGIN: Duration = Duration::from_millis(200);
/// Audio whose partials have no words, the VAD still hearing speech: noise (see the module doc).
pub const NO_WORDS: Duration = Duration::from_millis(2000);
/// How far under the caller's level ([`speech_level_db`] of their utterances with words) the
/// words of a quiet utterance may be and still be the caller's: quieter words are the
/// background's (a café's babble heard as "Okay.").
pub const QUIET_LEVEL_MARGIN_DB: f32 = 6.0;
/// Voiced audio after a quiet utterance's last empty partial worth a final pass when the VAD
/// ends it.
const MIN_QUIET_PASS: Duration = Duration::from_millis(200);
/// How far before the end of the audio of a quiet utterance's last empty partial its words may
/// begin (a word the partial heard only the start of).
const WORD_MARGIN_SAMPLES: usize = 500 * 16;
/// A quiet utterance longer than [`QUIET_MAX`] is cut back to its last this much.
pub const QUIET_KEEP: Duration = Duration::from_millis(2000);
/// Longest quiet utterance (its partials re-decode all of it).
pub const QUIET_MAX: Duration = Duration::from_millis(4000);
/// An utterance longer than this is cut into segments (Whisper's window is 30 s).
pub const MAX_UTTERANCE: Duration = Duration::from_secs(25);
/// A voicemail beep is looked for during this much of the start of the call.
const BEEP_WINDOW: Duration = Duration::from_secs(60);
/// Recent audio (as the recogniser hears it) kept for the pre-roll (≥ the VAD's start delay + [`PRE_ROLL`]).
const HISTORY: Duration = Duration::from_millis(1000);

const FRAME: Duration = Duration::from_millis(20);

fn frames(d: Duration) -> usize {
    (d.as_millis() / FRAME.as_millis()) as usize
}

/// What a call listens with.
#[derive(Clone)]
pub struct ListeningSetup {
    pub denoise: DenoiseMode,
    /// Silero's shared session, when present; else webrtc-vad.
    pub silero: Option<Arc<SileroModel>>,
    pub vad: VadConfig,
    /// The speech-to-text engine and how to ask it.
    pub stt: Option<SharedStt>,
    pub language: String,
    pub final_quality: SttQuality,
    /// The semantic end-of-turn model, when enabled: asked at every end of caller speech.
    pub smart_turn: Option<Arc<SmartTurn>>,
}

/// A speech-to-text request in flight.
pub type SttJob = Pin<Box<dyn Future<Output = SttDone> + Send>>;

/// A finished request.
pub struct SttDone {
    /// Which utterance (segment) it was for.
    seq: u64,
    kind: JobKind,
    start: Duration,
    end: Duration,
    /// Samples of the utterance a partial pass heard (0 for the others).
    covered: usize,
    result: JobResult,
}

enum JobResult {
    Stt(Result<Transcription, crate::providers::stt::SttError>),
    /// The end-of-turn model's probability (None: it failed; logged).
    Hint(Option<f32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    Partial,
    Final,
    /// A final pass started before the VAD's end of speech.
    Speculative,
    /// The final pass of a quiet utterance the VAD ended before a partial had words in it.
    Quiet,
    Hint,
}

/// The speculative final pass of the current utterance.
struct Speculation {
    seq: u64,
    /// The end of speech it assumed (media time of the first silent frame).
    end: Duration,
    /// Its result was announced as [`ListenerEvent::Tentative`].
    announced: bool,
    /// The result, once in (while not yet promoted).
    done: Option<SttDone>,
}

struct Utterance {
    seq: u64,
    start_frame: u64,
    /// The frame whose audio is `samples[0]` (the pre-roll's first).
    first_frame: u64,
    samples: Vec<i16>,
    /// Samples at the last partial request.
    partial_at: usize,
    /// The words of the latest partial (lower case, no punctuation).
    words: String,
    /// Samples the partial that first had [`Self::words`] (as far as [`same_progress`] can
    /// tell) heard.
    words_at: usize,
    /// The latest partial with words ends a sentence ([`completeness`] says `Complete`).
    complete: bool,
    /// Samples the latest partial without words heard.
    empty_at: usize,
    /// The words stopped at this many samples: end the utterance shortly after (next frame).
    stalled: Option<usize>,
    /// No words in [`NO_WORDS`] of it: end it as noise (next frame).
    wordless: bool,
    /// A quiet utterance: not announced (no `SpeechStarted`) until a partial has words.
    quiet: bool,
    /// Its start may not be announced before this frame (the end of the noise before it).
    not_before: u64,
}

impl Utterance {
    fn new(seq: u64, start_frame: u64, first_frame: u64, samples: Vec<i16>, quiet: bool) -> Self {
        Self {
            seq,
            start_frame,
            first_frame,
            samples,
            partial_at: 0,
            words: String::new(),
            words_at: 0,
            complete: false,
            empty_at: 0,
            stalled: None,
            wordless: false,
            quiet,
            not_before: 0,
        }
    }
}

/// Whether two partials' words (from [`words_of`]) say the caller has got no further: their
/// letters (spaces dropped) as many give or take a few, and the same last dozen. Re-decoding
/// flickers over the middle ("calling to change" / "calling for change") and over where words
/// split ("o'clock" / "o' clock"); new speech adds letters at the end.
fn same_progress(a: &str, b: &str) -> bool {
    /// Letters compared at the end.
    const TAIL: usize = 12;
    /// Letters a flicker may add or drop.
    const SLACK: usize = 3;
    let letters = |s: &str| s.chars().filter(|c| *c != ' ').collect::<Vec<char>>();
    let (a, b) = (letters(a), letters(b));
    a.len().abs_diff(b.len()) <= SLACK
        && a[a.len().saturating_sub(TAIL)..] == b[b.len().saturating_sub(TAIL)..]
}

/// The level of the speech in `samples`, dB re full scale: the 90th percentile of its 20 ms
/// frames' RMS (the loud part of the words, not the pauses between them).
fn speech_level_db(samples: &[i16]) -> f32 {
    let mut levels: Vec<f32> = samples
        .chunks_exact(PIPELINE_FRAME_SAMPLES)
        .map(|f| {
            let power = f.iter().map(|&s| f32::from(s) * f32::from(s)).sum::<f32>() / f.len() as f32;
            10.0 * (power.max(1.0) / (32768.0 * 32768.0)).log10()
        })
        .collect();
    if levels.is_empty() {
        return -100.0;
    }
    levels.sort_by(f32::total_cmp);
    levels[(levels.len() - 1) * 9 / 10]
}

/// `text`'s words, lower case, without punctuation, numbers spelled out (partials flicker between
/// "7" and "seven"): what partials are compared by.
fn words_of(text: &str) -> String {
    normalise_words(text).join(" ")
}

/// One call's listening state.
pub struct Listening {
    setup: ListeningSetup,
    denoiser: Denoiser,
    denoised: Vec<i16>,
    /// The same frame as the recogniser hears it ([`Denoiser::process_with_source`]).
    heard: Vec<i16>,
    vad: Vad,
    /// Frames processed (the next frame's index).
    frame: u64,
    latency: Duration,
    history: VecDeque<i16>,
    utterance: Option<Utterance>,
    next_seq: u64,
    partial_in_flight: bool,
    /// The speculative pass of the utterance under way (not yet confirmed by the VAD).
    speculation: Option<Speculation>,
    /// Speculative passes the VAD confirmed (it ended their utterance where they assumed) whose
    /// results are still to come: they are those utterances' final passes. Kept apart from
    /// [`Self::speculation`], which the next utterance reuses while these are still running.
    promoted: Vec<(u64, Duration)>,
    /// The utterance [`Self::words_stopped`] ended, until its final transcript is out: the quiet
    /// utterance after it is not announced before that, so the turn its words make is decided
    /// first whichever engine answers first (a remote final pass comes after a local partial).
    cut_final: Option<u64>,
    /// Quiet passes that finished while [`Self::cut_final`] was out (see [`Self::on_stt`]).
    held_quiet: Vec<SttDone>,
    /// The caller's speech level ([`speech_level_db`]), from their utterances with words.
    caller_level_db: Option<f32>,
    stt_partial: Histogram,
    stt_final: Histogram,
    speculative_hit: Counter,
    speculative_miss: Counter,
    /// Listens for an answering machine's beep at the start of the call.
    beep: Option<BeepDetector>,
}

impl Listening {
    pub fn new(setup: ListeningSetup, metrics: &Metrics) -> Self {
        let denoiser = Denoiser::new(setup.denoise);
        let latency = Duration::from_secs_f32(denoiser.latency_ms() / 1000.0);
        let vad = Vad::with_engine(setup.silero.as_ref(), setup.vad);
        let final_pass = match setup.final_quality {
            SttQuality::Accurate => "accurate",
            _ => "final",
        };
        // One statement each: the family's read guard lives to the end of its statement.
        let speculative_hit =
            metrics.stt_speculative.get_or_create(&KindLabels { kind: "hit".into() }).clone();
        let speculative_miss =
            metrics.stt_speculative.get_or_create(&KindLabels { kind: "miss".into() }).clone();
        Self {
            denoiser,
            denoised: vec![0; PIPELINE_FRAME_SAMPLES],
            heard: vec![0; PIPELINE_FRAME_SAMPLES],
            vad,
            frame: 0,
            latency,
            history: VecDeque::with_capacity(frames(HISTORY) * PIPELINE_FRAME_SAMPLES),
            utterance: None,
            next_seq: 1,
            partial_in_flight: false,
            speculation: None,
            promoted: Vec::new(),
            cut_final: None,
            held_quiet: Vec::new(),
            caller_level_db: None,
            stt_partial: metrics.stt("partial"),
            stt_final: metrics.stt(final_pass),
            speculative_hit,
            speculative_miss,
            beep: Some(BeepDetector::new(crate::call::PIPELINE_RATE_HZ)),
            setup,
        }
    }

    fn at(&self, frame: u64) -> Duration {
        (FRAME * frame as u32).saturating_sub(self.latency)
    }

    /// Takes one 20 ms frame; pushes speech events to `events` and STT requests to `jobs`.
    pub fn on_frame(&mut self, frame: &[i16], events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        self.hear(frame, events, jobs);
        // A cut utterance's transcript may have come out with this frame (a speculative pass).
        self.release_held(events);
    }

    fn hear(&mut self, frame: &[i16], events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        // On the raw audio: the denoiser would remove a steady tone.
        if let Some(detector) = self.beep.as_mut() {
            if let Some(b) = detector.push(frame) {
                events.push(ListenerEvent::Beep { hz: b.hz, at: FRAME * (self.frame as u32 + 1) });
            }
            if self.frame >= frames(BEEP_WINDOW) as u64 {
                self.beep = None;
            }
        }
        self.denoiser.process_with_source(frame, &mut self.denoised, &mut self.heard);
        let (_prob, event) = self.vad.process(&self.denoised);
        let index = self.frame;
        self.frame += 1;
        if self.history.len() + PIPELINE_FRAME_SAMPLES > self.history.capacity() {
            self.history.drain(..PIPELINE_FRAME_SAMPLES);
        }
        self.history.extend(self.heard.iter().copied());

        if let Some(u) = self.utterance.as_mut() {
            u.samples.extend_from_slice(&self.heard);
        }
        match event {
            Some(VadEvent::SpeechStart { frame }) => self.start_utterance(frame, index, events),
            Some(VadEvent::SpeechEnd { frame }) => self.end_utterance(frame, events, jobs),
            None => {}
        }
        let Some(u) = self.utterance.as_ref() else { return };
        if let Some(at) = u.stalled {
            self.words_stopped(at, events, jobs);
            return;
        }
        if u.wordless {
            self.end_as_noise(events);
            return;
        }
        let len = Duration::from_millis(u.samples.len() as u64 / 16);
        if u.quiet && len > QUIET_MAX {
            self.trim_quiet();
        } else if len >= MAX_UTTERANCE {
            // Cut a very long utterance into segments; the caller is still speaking.
            self.end_utterance(index, events, jobs);
            self.start_utterance(index, index, events);
            return;
        }
        self.maybe_partial(jobs);
        self.check_speculation(events);
        self.maybe_speculate(jobs);
    }

    /// The caller spoke again after the pause a speculative pass assumed: it is void.
    fn check_speculation(&mut self, events: &mut Vec<ListenerEvent>) {
        let Some(s) = self.speculation.as_ref() else { return };
        if self.vad.pending_end().map(|e| self.at(e)) == Some(s.end) {
            return;
        }
        if s.announced {
            events.push(ListenerEvent::SpeechResumed);
        }
        self.speculation = None;
        self.speculative_miss.inc();
    }

    /// Starts the final pass early once the caller has been silent for [`POST_ROLL`].
    fn maybe_speculate(&mut self, jobs: &mut Vec<SttJob>) {
        let (Some(stt), Some(end), Some(u)) = (&self.setup.stt, self.vad.pending_end(), &self.utterance)
        else {
            return;
        };
        if u.quiet {
            return;
        }
        if self.frame.saturating_sub(end) < frames(POST_ROLL) as u64 {
            return;
        }
        let end_at = self.at(end);
        if self.speculation.as_ref().is_some_and(|s| s.seq == u.seq && s.end == end_at) {
            return;
        }
        if self.speculation.take().is_some() {
            self.speculative_miss.inc();
        }
        let req = SttRequest {
            pcm_16k: to_f32(&u.samples[..self.trimmed_len(u, end)]),
            language: self.setup.language.clone(),
            quality: self.setup.final_quality,
        };
        let start = self.at(u.start_frame);
        jobs.push(job(stt.clone(), req, u.seq, JobKind::Speculative, start, end_at));
        self.speculation = Some(Speculation { seq: u.seq, end: end_at, announced: false, done: None });
    }

    /// Samples of `u` up to [`POST_ROLL`] after speech that ended at frame `end` (the hangover
    /// beyond it is dropped).
    fn trimmed_len(&self, u: &Utterance, end: u64) -> usize {
        let after_end = self.frame.saturating_sub(end) as usize;
        let drop_frames = after_end.saturating_sub(frames(POST_ROLL));
        u.samples.len().saturating_sub(drop_frames * PIPELINE_FRAME_SAMPLES)
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    fn start_utterance(&mut self, start: u64, now: u64, events: &mut Vec<ListenerEvent>) {
        // From PRE_ROLL before the first voiced frame, as far as history reaches.
        let back = (now - start) as usize + 1 + frames(PRE_ROLL);
        let take = (back * PIPELINE_FRAME_SAMPLES).min(self.history.len());
        let samples: Vec<i16> = self.history.iter().skip(self.history.len() - take).copied().collect();
        let seq = self.next_seq();
        let first_frame = self.frame - (take / PIPELINE_FRAME_SAMPLES) as u64;
        self.utterance = Some(Utterance::new(seq, start, first_frame, samples, false));
        events.push(ListenerEvent::SpeechStarted { at: self.at(start) });
    }

    /// The partials stopped changing at `at` samples into the utterance while the VAD still
    /// hears speech: ends the utterance there and listens on in a quiet one (module doc).
    fn words_stopped(&mut self, at: usize, events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        let Some(u) = self.utterance.as_ref() else { return };
        // The partial that first had the words may have heard only the start of the last one.
        let end = (u.first_frame + (at.div_ceil(PIPELINE_FRAME_SAMPLES) + frames(STALL_MARGIN)) as u64)
            .min(self.frame);
        let keep = ((end - u.first_frame) as usize + frames(POST_ROLL)) * PIPELINE_FRAME_SAMPLES;
        let rest = u.samples.get(keep..).unwrap_or_default().to_vec();
        tracing::debug!(
            at_ms = self.at(end).as_millis() as u64,
            "the words stopped; the VAD still hears speech"
        );
        if !u.quiet {
            self.cut_final = Some(u.seq);
        }
        self.end_utterance(end, events, jobs);
        let seq = self.next_seq();
        let first = self.frame - (rest.len() / PIPELINE_FRAME_SAMPLES) as u64;
        self.utterance = Some(Utterance::new(seq, first, first, rest, true));
    }

    /// The utterance's partials found no words in [`NO_WORDS`] of it: it ends as noise (no
    /// final pass: an empty final transcript) and the sound goes on as a quiet utterance.
    fn end_as_noise(&mut self, events: &mut Vec<ListenerEvent>) {
        let Some(mut u) = self.utterance.take() else { return };
        let (start, end) = (self.at(u.start_frame), self.at(self.frame));
        tracing::debug!(at_ms = end.as_millis() as u64, "no words in the sound the VAD hears: noise");
        if self.speculation.take().is_some() {
            self.speculative_miss.inc();
        }
        events.push(ListenerEvent::SpeechEnded { at: end });
        events.push(ListenerEvent::Final { text: String::new(), confidence: 0.0, start, end });
        u.seq = self.next_seq();
        u.quiet = true;
        u.wordless = false;
        u.words_at = 0;
        u.not_before = self.frame;
        self.utterance = Some(u);
        self.trim_quiet();
    }

    /// The VAD ended a quiet utterance. What its partials heard had no words, but the audio since
    /// the last of them may (a short answer between two partials): a final pass on that, which
    /// announces it only if it has words ([`JobKind::Quiet`]).
    fn end_quiet(&mut self, mut u: Utterance, end: u64, jobs: &mut Vec<SttJob>) {
        let Some(stt) = self.setup.stt.clone() else { return };
        let keep = self.trimmed_len(&u, end);
        u.samples.truncate(keep);
        let cut = (u.empty_at.saturating_sub(WORD_MARGIN_SAMPLES) / PIPELINE_FRAME_SAMPLES)
            .min(u.samples.len() / PIPELINE_FRAME_SAMPLES);
        let from = u.first_frame + cut as u64;
        if end < from + frames(MIN_QUIET_PASS) as u64 {
            return;
        }
        if !self.as_loud_as_the_caller(&u.samples[cut * PIPELINE_FRAME_SAMPLES..]) {
            return;
        }
        let start = self.at((from + if cut > 0 { frames(PRE_ROLL) as u64 } else { 0 }).max(u.not_before));
        let req = SttRequest {
            pcm_16k: to_f32(&u.samples[cut * PIPELINE_FRAME_SAMPLES..]),
            language: self.setup.language.clone(),
            quality: self.setup.final_quality,
        };
        jobs.push(job(stt, req, u.seq, JobKind::Quiet, start, self.at(end)));
    }

    /// Whether `samples` (a quiet utterance's) are loud enough to be the caller's words: within
    /// [`QUIET_LEVEL_MARGIN_DB`] of the caller's level, or anything before that is known.
    fn as_loud_as_the_caller(&self, samples: &[i16]) -> bool {
        self.caller_level_db.is_none_or(|l| speech_level_db(samples) >= l - QUIET_LEVEL_MARGIN_DB)
    }

    /// Keeps a quiet utterance's last [`QUIET_KEEP`] of audio. A new sequence number: a partial
    /// still running heard the untrimmed audio, its sample counts no longer fit.
    fn trim_quiet(&mut self) {
        let seq = self.next_seq();
        let Some(u) = self.utterance.as_mut().filter(|u| u.quiet) else { return };
        u.seq = seq;
        let keep = frames(QUIET_KEEP) * PIPELINE_FRAME_SAMPLES;
        let drop = u.samples.len().saturating_sub(keep);
        u.samples.drain(..drop);
        u.first_frame += (drop / PIPELINE_FRAME_SAMPLES) as u64;
        u.start_frame = u.start_frame.max(u.first_frame);
        u.partial_at = u.partial_at.saturating_sub(drop);
        u.words_at = u.words_at.saturating_sub(drop);
        u.empty_at = u.empty_at.saturating_sub(drop);
    }

    fn end_utterance(&mut self, end: u64, events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        let Some(mut u) = self.utterance.take() else { return };
        if u.quiet {
            self.end_quiet(u, end, jobs);
            return;
        }
        // Keep POST_ROLL after the last voiced frame; drop the rest of the hangover.
        let keep = self.trimmed_len(&u, end);
        u.samples.truncate(keep);
        if !u.words.is_empty() {
            let level = speech_level_db(&u.samples);
            self.caller_level_db = Some(self.caller_level_db.map_or(level, |l| (l + level) / 2.0));
        }
        let (start, end_at) = (self.at(u.start_frame), self.at(end));
        events.push(ListenerEvent::SpeechEnded { at: end_at });
        // The speculative pass ran on this very audio: it is the final one.
        let speculated = match self.speculation.take() {
            Some(mut s) if s.seq == u.seq && s.end == end_at => {
                self.speculative_hit.inc();
                match s.done.take() {
                    Some(done) => events.extend(self.final_event(done)),
                    None => self.promoted.push((s.seq, s.end)),
                }
                true
            }
            Some(_) => {
                self.speculative_miss.inc();
                false
            }
            None => false,
        };
        let pcm = to_f32(&u.samples);
        if let Some(model) = self.setup.smart_turn.clone() {
            let (pcm, seq) = (pcm.clone(), u.seq);
            jobs.push(Box::pin(async move {
                let p = tokio::task::spawn_blocking(move || model.predict(&pcm)).await;
                let p = match p {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "end-of-turn model failed");
                        None
                    }
                    Err(_) => None,
                };
                SttDone {
                    seq,
                    kind: JobKind::Hint,
                    start,
                    end: end_at,
                    covered: 0,
                    result: JobResult::Hint(p),
                }
            }));
        }
        match &self.setup.stt {
            Some(_) if speculated => {}
            Some(stt) => {
                let req = SttRequest {
                    pcm_16k: pcm,
                    language: self.setup.language.clone(),
                    quality: self.setup.final_quality,
                };
                jobs.push(job(stt.clone(), req, u.seq, JobKind::Final, start, end_at));
            }
            None => {
                events.push(ListenerEvent::Final { text: String::new(), confidence: 0.0, start, end: end_at })
            }
        }
    }

    fn maybe_partial(&mut self, jobs: &mut Vec<SttJob>) {
        let Some(stt) = self.setup.stt.as_ref().filter(|s| s.partials()) else { return };
        let Some(u) = self.utterance.as_mut() else { return };
        // Not in a pause: the speculative final pass is due and must not queue behind it.
        if self.partial_in_flight || self.vad.pending_end().is_some() {
            return;
        }
        let first = u.partial_at == 0;
        let due = if first { FIRST_PARTIAL } else { PARTIAL_EVERY };
        let since = Duration::from_millis((u.samples.len() - u.partial_at) as u64 / 16);
        if since < due {
            return;
        }
        u.partial_at = u.samples.len();
        self.partial_in_flight = true;
        let req = SttRequest {
            pcm_16k: to_f32(&u.samples),
            language: self.setup.language.clone(),
            quality: SttQuality::Partial,
        };
        let start = FRAME * u.start_frame as u32;
        jobs.push(job(stt.clone(), req, u.seq, JobKind::Partial, start, start));
    }

    /// A partial of the current utterance came back, having heard `covered` samples: tracks
    /// when its words last changed; announces a quiet utterance that has words.
    fn on_partial_words(&mut self, text: &str, covered: usize) -> Option<ListenerEvent> {
        let no_words = frames(NO_WORDS) * PIPELINE_FRAME_SAMPLES;
        let vad_speaking = self.vad.pending_end().is_none();
        let cut_final_pending = self.cut_final.is_some();
        let caller_level_db = self.caller_level_db;
        let u = self.utterance.as_mut()?;
        let mut words = words_of(text);
        if u.quiet && !words.is_empty() {
            // The audio the words may be in: from shortly before what the last empty partial
            // heard. Much quieter than the caller, they are the background's: as if none.
            let heard = covered.min(u.samples.len());
            let from = u.empty_at.saturating_sub(WORD_MARGIN_SAMPLES).min(heard);
            if caller_level_db
                .is_some_and(|l| speech_level_db(&u.samples[from..heard]) < l - QUIET_LEVEL_MARGIN_DB)
            {
                words.clear();
            }
        }
        // A quiet utterance holding words (until the cut utterance's transcript is out) keeps
        // where they may begin: an empty partial since is a dropout.
        let holding = u.quiet && !u.words.is_empty();
        let has_words = !words.is_empty();
        if !has_words {
            if !holding {
                u.empty_at = covered;
            }
        } else {
            u.complete = completeness(text) == Completeness::Complete;
        }
        let still =
            frames(if u.complete { WORDS_STILL_COMPLETE } else { WORDS_STILL }) * PIPELINE_FRAME_SAMPLES;
        if !words.is_empty() && !same_progress(&words, &u.words) {
            u.words = words;
            u.words_at = covered;
        } else if !u.words.is_empty() {
            // No further (an empty partial after words is a dropout, not the words gone).
            if vad_speaking && covered >= u.words_at + still {
                u.stalled = Some(u.words_at);
            }
        } else if !u.quiet && vad_speaking && covered >= no_words {
            u.wordless = true;
        }
        if u.quiet && has_words && !cut_final_pending {
            // The words came after what the last empty partial heard (less a margin for a word
            // it had only the start of): the utterance starts there.
            let cut = (u.empty_at.saturating_sub(WORD_MARGIN_SAMPLES) / PIPELINE_FRAME_SAMPLES)
                .min(u.samples.len() / PIPELINE_FRAME_SAMPLES);
            u.samples.drain(..cut * PIPELINE_FRAME_SAMPLES);
            u.first_frame += cut as u64;
            u.start_frame = u
                .start_frame
                .max(u.first_frame + if cut > 0 { frames(PRE_ROLL) as u64 } else { 0 })
                .max(u.not_before)
                .min(self.frame);
            u.empty_at = u.empty_at.saturating_sub(cut * PIPELINE_FRAME_SAMPLES);
            u.partial_at = u.partial_at.saturating_sub(cut * PIPELINE_FRAME_SAMPLES);
            u.words_at = u.words_at.saturating_sub(cut * PIPELINE_FRAME_SAMPLES);
            u.quiet = false;
            let start = u.start_frame;
            return Some(ListenerEvent::SpeechStarted { at: self.at(start) });
        }
        None
    }

    /// A speech-to-text request finished: pushes the events it makes, if still relevant.
    pub fn on_stt(&mut self, done: SttDone, events: &mut Vec<ListenerEvent>) {
        if done.kind == JobKind::Quiet && self.cut_final.is_some() {
            // Its words come after the cut utterance's: held until that transcript is out.
            self.held_quiet.push(done);
            return;
        }
        if let Some(last) = self.stt_event(done, events) {
            events.push(last);
        }
        self.release_held(events);
    }

    /// The quiet passes held back by [`Self::cut_final`], once it is out.
    fn release_held(&mut self, events: &mut Vec<ListenerEvent>) {
        if self.cut_final.is_some() || self.held_quiet.is_empty() {
            return;
        }
        for done in std::mem::take(&mut self.held_quiet) {
            if let Some(last) = self.stt_event(done, events) {
                events.push(last);
            }
        }
    }

    /// [`Self::on_stt`]'s last event (any before it pushed to `events`).
    fn stt_event(&mut self, done: SttDone, events: &mut Vec<ListenerEvent>) -> Option<ListenerEvent> {
        let result = match done.result {
            JobResult::Hint(p) => {
                return p.map(|complete| ListenerEvent::TurnHint { complete, at: done.end })
            }
            JobResult::Stt(r) => r,
        };
        match done.kind {
            JobKind::Hint => None,
            JobKind::Partial => {
                self.partial_in_flight = false;
                let t = result.ok()?;
                self.stt_partial.observe(t.compute.as_secs_f64());
                self.utterance.as_ref().filter(|u| u.seq == done.seq)?;
                let started = self.on_partial_words(&t.text, done.covered);
                let quiet = self.utterance.as_ref().is_some_and(|u| u.quiet);
                if let Some(started) = started {
                    events.push(started);
                }
                (!quiet && !t.text.trim().is_empty())
                    .then(|| ListenerEvent::Partial { text: t.text, at: self.at(self.frame) })
            }
            JobKind::Quiet => {
                // The VAD ended a quiet utterance before a partial had found words in it.
                let t = result.ok().filter(|t| !t.text.trim().is_empty())?;
                self.stt_final.observe(t.compute.as_secs_f64());
                let announced = self.utterance.as_ref().is_some_and(|u| !u.quiet);
                if !announced {
                    events.push(ListenerEvent::SpeechStarted { at: done.start });
                    events.push(ListenerEvent::SpeechEnded { at: done.end });
                }
                // With the caller's next utterance under way, the words join the turn as a
                // transcript alone (its SpeechEnded will be counted by that utterance's).
                Some(ListenerEvent::Final {
                    text: t.text,
                    confidence: t.confidence,
                    start: done.start,
                    end: done.end,
                })
            }
            JobKind::Speculative => {
                if let Some(i) = self.promoted.iter().position(|&p| p == (done.seq, done.end)) {
                    self.promoted.swap_remove(i);
                    return self.final_event(SttDone { result: JobResult::Stt(result), ..done });
                }
                let Some(s) = self.speculation.as_mut().filter(|s| s.seq == done.seq && s.end == done.end)
                else {
                    return None; // the caller spoke again: counted when replaced
                };
                let tentative = match &result {
                    Ok(t) if !t.text.trim().is_empty() => {
                        Some(ListenerEvent::Tentative { text: t.text.clone(), confidence: t.confidence })
                    }
                    _ => None,
                };
                s.done = Some(SttDone { result: JobResult::Stt(result), ..done });
                s.announced = tentative.is_some();
                tentative
            }
            JobKind::Final => self.final_event(SttDone { result: JobResult::Stt(result), ..done }),
        }
    }

    /// The `Final` event of a finished final pass.
    fn final_event(&mut self, done: SttDone) -> Option<ListenerEvent> {
        if self.cut_final == Some(done.seq) {
            self.cut_final = None;
        }
        let JobResult::Stt(result) = done.result else { return None };
        let (text, confidence) = match result {
            Ok(t) => {
                self.stt_final.observe(t.compute.as_secs_f64());
                (t.text, t.confidence)
            }
            Err(e) => {
                tracing::warn!(error = %e, "final transcription failed; the utterance is lost");
                (String::new(), 0.0)
            }
        };
        Some(ListenerEvent::Final { text, confidence, start: done.start, end: done.end })
    }
}

fn to_f32(samples: &[i16]) -> Arc<[f32]> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

fn job(stt: SharedStt, req: SttRequest, seq: u64, kind: JobKind, start: Duration, end: Duration) -> SttJob {
    let covered = if kind == JobKind::Partial { req.pcm_16k.len() } else { 0 };
    Box::pin(async move {
        let result = JobResult::Stt(stt.transcribe(req).await);
        SttDone { seq, kind, start, end, covered, result }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audio::testutil::fixture_l16;
    use crate::providers::stt::{SttEngine, SttError};

    /// Answers every request at once and remembers (quality, samples). With `partials`, partial
    /// passes answer from `script`, then with a new word each time (never still); final passes
    /// answer from `finals`, then `"pass N"` (the N-th final pass).
    #[derive(Default)]
    struct Scripted {
        partials: bool,
        script: Mutex<VecDeque<&'static str>>,
        finals: Mutex<VecDeque<&'static str>>,
        requests: Mutex<Vec<(SttQuality, usize)>>,
    }

    impl Scripted {
        fn with_partials() -> Arc<Self> {
            Arc::new(Self { partials: true, ..Self::default() })
        }
    }

    impl SttEngine for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn covers(&self, _: &str) -> bool {
            true
        }
        fn partials(&self) -> bool {
            self.partials
        }
        fn transcribe(
            &self,
            req: SttRequest,
        ) -> Pin<Box<dyn Future<Output = Result<Transcription, SttError>> + Send + '_>> {
            let mut requests = self.requests.lock().unwrap();
            requests.push((req.quality, req.pcm_16k.len()));
            let next = match req.quality {
                SttQuality::Partial => self.script.lock().unwrap().pop_front(),
                _ => self.finals.lock().unwrap().pop_front(),
            };
            let text = match (next, req.quality) {
                (Some(t), _) => t.to_string(),
                (None, SttQuality::Partial) => format!("word {}", requests.len()),
                (None, _) => {
                    format!("pass {}", requests.iter().filter(|r| r.0 != SttQuality::Partial).count())
                }
            };
            Box::pin(async move {
                Ok(Transcription {
                    text,
                    confidence: 1.0,
                    engine: "scripted",
                    audio_ms: 0,
                    compute: Duration::ZERO,
                })
            })
        }
    }

    fn listening_with(stt: SharedStt, metrics: &Metrics) -> Listening {
        let setup = ListeningSetup {
            denoise: DenoiseMode::Off,
            silero: None,
            vad: VadConfig::default(),
            stt: Some(stt),
            language: "en-US".into(),
            final_quality: SttQuality::Final,
            smart_turn: None,
        };
        Listening::new(setup, metrics)
    }

    fn listening(stt: &Arc<Scripted>, metrics: &Metrics) -> Listening {
        listening_with(stt.clone() as SharedStt, metrics)
    }

    /// `caller-hello` without its leading and trailing quiet frames.
    fn hello() -> Vec<i16> {
        let audio = fixture_l16("caller-hello.l16-16k.wav");
        let loud: Vec<usize> = audio
            .chunks_exact(PIPELINE_FRAME_SAMPLES)
            .enumerate()
            .filter(|(_, f)| crate::audio::testutil::rms(f) > 500.0)
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (loud[0], loud[loud.len() - 1]);
        audio[first * PIPELINE_FRAME_SAMPLES..(last + 1) * PIPELINE_FRAME_SAMPLES].to_vec()
    }

    /// Feeds `audio` frame by frame; STT jobs finish `delay` frames after they were started.
    fn run(l: &mut Listening, audio: &[i16], delay: usize) -> Vec<(u64, ListenerEvent)> {
        run_by_kind(l, audio, |_| delay)
    }

    /// [`run`] with a delay per kind of job (the scripted engine answers when the job is made;
    /// the listener hears of it `delay(kind)` frames later).
    fn run_by_kind(
        l: &mut Listening,
        audio: &[i16],
        delay: impl Fn(JobKind) -> usize,
    ) -> Vec<(u64, ListenerEvent)> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut out = Vec::new();
        let mut pending: Vec<(usize, SttDone)> = Vec::new();
        for (i, frame) in audio.chunks_exact(PIPELINE_FRAME_SAMPLES).enumerate() {
            let (mut events, mut jobs) = (Vec::new(), Vec::new());
            l.on_frame(frame, &mut events, &mut jobs);
            out.extend(events.into_iter().map(|e| (i as u64, e)));
            for job in jobs {
                let done = rt.block_on(job);
                pending.push((i + delay(done.kind), done));
            }
            while let Some(k) = pending.iter().position(|(due, _)| *due <= i) {
                let (_, done) = pending.remove(k);
                let mut events = Vec::new();
                l.on_stt(done, &mut events);
                out.extend(events.into_iter().map(|e| (i as u64, e)));
            }
        }
        out
    }

    fn finals(events: &[(u64, ListenerEvent)]) -> Vec<(u64, String, Duration, Duration)> {
        events
            .iter()
            .filter_map(|(i, e)| match e {
                ListenerEvent::Final { text, start, end, .. } => Some((*i, text.clone(), *start, *end)),
                _ => None,
            })
            .collect()
    }

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * 16]
    }

    #[test]
    fn the_final_pass_starts_in_the_hangover_and_is_the_final_transcript() {
        let metrics = Metrics::new();
        for delay in [0, 3, 20] {
            let stt = Arc::new(Scripted::default());
            let mut l = listening(&stt, &metrics);
            let audio = [silence(500), hello(), silence(1500)].concat();
            let events = run(&mut l, &audio, delay);
            let ended = events
                .iter()
                .find_map(|(i, e)| matches!(e, ListenerEvent::SpeechEnded { .. }).then_some(*i))
                .expect("speech ended");
            let requests = stt.requests.lock().unwrap().clone();
            assert_eq!(requests.len(), 1, "one pass, the speculative one (delay {delay}): {requests:?}");
            let got = finals(&events);
            assert_eq!(got.len(), 1, "{got:?}");
            let (at, text, start, end) = got[0].clone();
            assert_eq!(text, "pass 1");
            // Exactly the audio the final pass would get: pre-roll, speech, post-roll.
            let post = POST_ROLL.as_millis() as usize / 20 * 20;
            let frames_sent = ((end - start).as_millis() as usize + 200 + post) / 20;
            assert_eq!(
                requests[0],
                (SttQuality::Final, frames_sent * PIPELINE_FRAME_SAMPLES),
                "delay {delay}"
            );
            // Started POST_ROLL after the end of speech, well before the VAD's end.
            let started = (end.as_millis() as u64 + post as u64) / 20;
            assert_eq!(at, ended.max(started - 1 + delay as u64), "delay {delay}: final at frame {at}");
            // Finished before the VAD's end: announced as tentative at once.
            let tentative: Vec<(u64, String)> = events
                .iter()
                .filter_map(|(i, e)| match e {
                    ListenerEvent::Tentative { text, .. } => Some((*i, text.clone())),
                    _ => None,
                })
                .collect();
            if started - 1 + (delay as u64) < ended {
                assert_eq!(
                    tentative,
                    vec![(started - 1 + delay as u64, "pass 1".to_string())],
                    "delay {delay}"
                );
            } else {
                assert!(tentative.is_empty(), "delay {delay}: {tentative:?}");
            }
        }
    }

    #[test]
    fn a_pause_shorter_than_the_hangover_wastes_one_pass_and_loses_nothing() {
        let metrics = Metrics::new();
        let stt = Arc::new(Scripted::default());
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), silence(240), hello(), silence(1500)].concat();
        let events = run(&mut l, &audio, 2);
        let got = finals(&events);
        assert_eq!(got.len(), 1, "one utterance across the pause: {got:?}");
        assert_eq!(got[0].1, "pass 2", "the second speculative pass is the final one");
        // The first pass was announced, then voided when the caller went on.
        let kinds: Vec<String> = events
            .iter()
            .filter(|(_, e)| matches!(e, ListenerEvent::Tentative { .. } | ListenerEvent::SpeechResumed))
            .map(|(_, e)| match e {
                ListenerEvent::Tentative { text, .. } => text.clone(),
                _ => "resumed".to_string(),
            })
            .collect();
        assert_eq!(kinds, ["pass 1", "resumed", "pass 2"]);
        assert_eq!(stt.requests.lock().unwrap().len(), 2);
        let count =
            |kind: &str| metrics.stt_speculative.get_or_create(&KindLabels { kind: kind.into() }).get();
        assert_eq!((count("hit"), count("miss")), (1, 1));
    }

    /// The caller pauses long enough for the VAD to end the utterance, then speaks again while
    /// the first utterance's (speculative, now final) pass is still running — longer than the
    /// whole second utterance. Both utterances get their transcript: the second one's
    /// speculative pass must not displace the first one's.
    #[test]
    fn a_slow_final_pass_survives_the_callers_next_utterance() {
        let metrics = Metrics::new();
        let stt = Arc::new(Scripted::default());
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), silence(600), hello(), silence(8000)].concat();
        let events = run(&mut l, &audio, 300);
        let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
        let ends = events.iter().filter(|(_, e)| matches!(e, ListenerEvent::SpeechEnded { .. })).count();
        assert_eq!(ends, 2, "two utterances");
        assert_eq!(got.len(), 2, "each utterance has its final transcript: {got:?}");
        assert!(got.contains(&"pass 1".to_string()), "{got:?}");
    }

    fn count(events: &[(u64, ListenerEvent)], want: fn(&ListenerEvent) -> bool) -> usize {
        events.iter().filter(|(_, e)| want(e)).count()
    }

    fn speech_times(events: &[(u64, ListenerEvent)]) -> Vec<(&'static str, Duration)> {
        events
            .iter()
            .filter_map(|(_, e)| match e {
                ListenerEvent::SpeechStarted { at } => Some(("started", *at)),
                ListenerEvent::SpeechEnded { at } => Some(("ended", *at)),
                _ => None,
            })
            .collect()
    }

    /// Speech the VAD never ends (the caller's sentence said three times without a pause, as
    /// babble would keep it open) while the partials stop changing: the utterance ends where
    /// its words were complete, and what follows is announced only once a partial has words.
    #[test]
    fn when_the_words_stop_and_the_sound_goes_on_the_utterance_ends_where_the_words_did() {
        let metrics = Metrics::new();
        let stt = Scripted::with_partials();
        // Partials 1–5 of the first utterance; then the quiet one's: nothing twice, then words.
        stt.script.lock().unwrap().extend([
            "hello",
            "hello there",
            "hello there,",
            "Hello there",
            "hello there",
            "",
            "",
            "and",
        ]);
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
        let events = run(&mut l, &audio, 0);
        let requests = stt.requests.lock().unwrap().clone();
        let times = speech_times(&events);
        assert_eq!(
            times.iter().map(|t| t.0).collect::<Vec<_>>(),
            ["started", "ended", "started", "ended"],
            "{times:?}"
        );
        // The first utterance's final pass heard up to the partial that first said "hello
        // there", plus the post-roll.
        let words_at = requests[1].1;
        assert_eq!(requests[1].0, SttQuality::Partial);
        let post = frames(POST_ROLL) * PIPELINE_FRAME_SAMPLES;
        let first_final = requests.iter().find(|r| r.0 != SttQuality::Partial).unwrap();
        let margin = frames(STALL_MARGIN) * PIPELINE_FRAME_SAMPLES;
        assert_eq!(
            first_final.1,
            words_at.div_ceil(PIPELINE_FRAME_SAMPLES) * PIPELINE_FRAME_SAMPLES + margin + post
        );
        // The quiet utterance was announced from after where the first one's audio ended, and
        // from before its words were heard.
        let announced =
            events.iter().filter(|(_, e)| matches!(e, ListenerEvent::SpeechStarted { .. })).nth(1).unwrap().0;
        assert!(times[2].1 >= times[1].1 + POST_ROLL && times[2].1 < l.at(announced), "{times:?}");
        let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
        assert_eq!(got, ["pass 1", "pass 2"]);
        // Its empty partials were not passed on; the one with words was, after its start.
        let partials: Vec<String> = events
            .iter()
            .filter_map(|(_, e)| match e {
                ListenerEvent::Partial { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(&partials[..5], ["hello", "hello there", "hello there,", "Hello there", "hello there"]);
        assert_eq!(partials[5], "and");
        assert!(partials[6..].iter().all(|p| p.starts_with("word")), "{partials:?}");
    }

    /// Words that end a sentence stop sooner: unchanged over [`WORDS_STILL_COMPLETE`] (the next
    /// partial) rather than [`WORDS_STILL`] (the third after).
    #[test]
    fn a_finished_sentence_stops_sooner_than_words_that_may_go_on() {
        for (second, partials_before_the_cut) in [("hello there.", 4), ("hello there", 5), ("hello and", 5)] {
            let metrics = Metrics::new();
            let stt = Scripted::with_partials();
            stt.script.lock().unwrap().extend(["hello", second, second, second, second]);
            let mut l = listening(&stt, &metrics);
            let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
            run(&mut l, &audio, 0);
            let requests = stt.requests.lock().unwrap().clone();
            let first_final = requests.iter().position(|r| r.0 != SttQuality::Partial).unwrap();
            assert_eq!(first_final, partials_before_the_cut, "{second:?}: {requests:?}");
        }
    }

    /// After the words stopped, sound much quieter than the caller is not the caller even when
    /// the recogniser finds words in it (a café's babble heard as "Okay."): no start, no pass.
    /// The same words at the caller's level are the caller's next utterance.
    #[test]
    fn words_quieter_than_the_caller_after_a_cut_are_the_background() {
        for (gain, announced) in [(0.15f32, false), (1.0, true)] {
            let metrics = Metrics::new();
            let stt = Scripted::with_partials();
            // The words change until the end of the first sentence, then stop; then the sound
            // after the cut "has words".
            let changing = [
                "a",
                "a b",
                "a b c",
                "a b c d",
                "a b c d e",
                "a b c d e f",
                "a b c d e f g",
                "a b c d e f g h",
            ];
            stt.script.lock().unwrap().extend(changing);
            stt.script.lock().unwrap().extend(["hello there"; 4]);
            stt.script.lock().unwrap().extend(["and then"; 40]);
            let mut l = listening(&stt, &metrics);
            let other: Vec<i16> = hello().iter().map(|&x| (f32::from(x) * gain) as i16).collect();
            let audio = [silence(500), hello(), other.clone(), other, silence(1500)].concat();
            let events = run(&mut l, &audio, 0);
            let starts = count(&events, |e| matches!(e, ListenerEvent::SpeechStarted { .. }));
            let passes = stt.requests.lock().unwrap().iter().filter(|r| r.0 != SttQuality::Partial).count();
            if announced {
                assert!(starts >= 2, "gain {gain}: {:?}", speech_times(&events));
            } else {
                assert_eq!((starts, passes), (1, 1), "gain {gain}: {:?}", speech_times(&events));
            }
        }
    }

    /// The words stopped, and the quiet utterance after the cut has words in its first partial
    /// while the cut utterance's final pass is still out (a remote engine: the partials are
    /// local and answer first). The quiet one is announced only after that final transcript, so
    /// the turn the first words make is decided before the caller is heard again.
    #[test]
    fn after_a_cut_the_next_words_wait_for_the_cut_utterances_transcript() {
        for final_delay in [0, 10, 40] {
            let metrics = Metrics::new();
            let stt = Scripted::with_partials();
            stt.script.lock().unwrap().extend(["hello there"; 4]);
            stt.script.lock().unwrap().push_back("and then");
            let mut l = listening(&stt, &metrics);
            let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
            let events =
                run_by_kind(&mut l, &audio, |kind| if kind == JobKind::Partial { 0 } else { final_delay });
            let order: Vec<&str> = events
                .iter()
                .filter_map(|(_, e)| match e {
                    ListenerEvent::SpeechStarted { .. } => Some("started"),
                    ListenerEvent::SpeechEnded { .. } => Some("ended"),
                    ListenerEvent::Final { .. } => Some("final"),
                    _ => None,
                })
                .collect();
            assert_eq!(
                order,
                ["started", "ended", "final", "started", "ended", "final"],
                "delay {final_delay}"
            );
            let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
            assert_eq!(got, ["pass 1", "pass 2"], "delay {final_delay}");
        }
    }

    /// The quiet utterance after a cut ends (the VAD) with words in its last audio while the cut
    /// utterance's final pass is still out: its start, end and transcript wait for that one.
    #[test]
    fn a_quiet_pass_that_answers_first_waits_for_the_cut_utterances_transcript() {
        let metrics = Metrics::new();
        let stt = Scripted::with_partials();
        let changing =
            ["a", "a b", "a b c", "a b c d", "a b c d e", "a b c d e f", "a b c d e f g", "a b c d e f g h"];
        stt.script.lock().unwrap().extend(changing);
        stt.script.lock().unwrap().extend(["hello there"; 4]);
        stt.script.lock().unwrap().extend([""; 40]);
        stt.finals.lock().unwrap().extend(["pass 1", "On Friday."]);
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), hello()[..16 * 2000].to_vec(), silence(3000)].concat();
        let events = run_by_kind(&mut l, &audio, |kind| match kind {
            JobKind::Partial | JobKind::Quiet => 0,
            _ => 100,
        });
        let order: Vec<String> = events
            .iter()
            .filter_map(|(_, e)| match e {
                ListenerEvent::SpeechStarted { .. } => Some("started".to_string()),
                ListenerEvent::SpeechEnded { .. } => Some("ended".to_string()),
                ListenerEvent::Final { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["started", "ended", "pass 1", "started", "ended", "On Friday."]);
    }

    /// After the words stopped, sound whose partials have no words until the VAD ends it: the
    /// audio after the last empty partial gets a final pass; with no words in it, nothing is
    /// announced; with words (a short answer between two partials), its start, end and
    /// transcript come at once.
    #[test]
    fn a_quiet_utterance_is_announced_at_its_end_only_if_its_last_audio_has_words() {
        for (last, announced) in [("", false), ("On Friday.", true)] {
            let metrics = Metrics::new();
            let stt = Scripted::with_partials();
            stt.script.lock().unwrap().extend(["hello there"; 4]);
            stt.script.lock().unwrap().extend([""; 40]);
            stt.finals.lock().unwrap().extend(["pass 1", last]);
            let mut l = listening(&stt, &metrics);
            let audio = [silence(500), hello(), hello(), silence(1500)].concat();
            let events = run(&mut l, &audio, 0);
            let times = speech_times(&events);
            let passes = stt.requests.lock().unwrap().iter().filter(|r| r.0 != SttQuality::Partial).count();
            assert_eq!(passes, 2, "the quiet utterance's last audio got a pass");
            assert_eq!(count(&events, |e| matches!(e, ListenerEvent::Tentative { .. })), 0);
            let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
            if announced {
                assert_eq!(
                    times.iter().map(|t| t.0).collect::<Vec<_>>(),
                    ["started", "ended", "started", "ended"]
                );
                assert!(times[2].1 > times[1].1 && times[3].1 > times[2].1, "{times:?}");
                assert_eq!(got, ["pass 1", "On Friday."]);
                // All three at once, when the pass came back.
                let at: Vec<u64> = events
                    .iter()
                    .filter(|(_, e)| {
                        matches!(
                            e,
                            ListenerEvent::SpeechStarted { .. }
                                | ListenerEvent::SpeechEnded { .. }
                                | ListenerEvent::Final { .. }
                        )
                    })
                    .map(|(i, _)| *i)
                    .skip(3)
                    .collect();
                assert!(at.len() == 3 && at.iter().all(|&i| i == at[0]), "{at:?}");
            } else {
                assert_eq!(times.iter().map(|t| t.0).collect::<Vec<_>>(), ["started", "ended"], "{times:?}");
                assert_eq!(got, ["pass 1"]);
            }
        }
    }

    /// Partials that keep changing never cut: speech the VAD does not end stays one utterance.
    #[test]
    fn changing_partials_never_cut() {
        let metrics = Metrics::new();
        let stt = Scripted::with_partials();
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
        let events = run(&mut l, &audio, 0);
        assert_eq!(speech_times(&events).len(), 2, "one utterance");
        assert_eq!(finals(&events).len(), 1);
    }

    /// Sound the VAD calls speech but whose partials never have words ends as noise after
    /// [`NO_WORDS`]: an empty final transcript, no final pass; the caller's words after it are
    /// announced as a new utterance when a partial hears them.
    #[test]
    fn sound_without_words_ends_as_noise_and_words_after_it_are_announced() {
        let metrics = Metrics::new();
        let stt = Scripted::with_partials();
        stt.script.lock().unwrap().extend(["", "", "", "", "", "", "", "and then"]);
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
        let events = run(&mut l, &audio, 0);
        let times = speech_times(&events);
        assert_eq!(
            times.iter().map(|t| t.0).collect::<Vec<_>>(),
            ["started", "ended", "started", "ended"],
            "{times:?}"
        );
        assert!(times[1].1 - times[0].1 >= NO_WORDS, "{times:?}");
        assert_in_order(&times);
        let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
        assert_eq!(got, ["", "pass 1"], "the noise's final transcript is empty and needed no pass");
        let passes = stt.requests.lock().unwrap().iter().filter(|r| r.0 != SttQuality::Partial).count();
        assert_eq!(passes, 1);
        // The words were announced from within the last QUIET_MAX before they were heard.
        let announced = events
            .iter()
            .filter(|(_, e)| matches!(e, ListenerEvent::SpeechStarted { .. }))
            .nth(1)
            .map(|(i, _)| *i)
            .unwrap();
        assert!(
            l.at(announced) - times[2].1 <= QUIET_MAX + PARTIAL_EVERY,
            "{times:?} announced at frame {announced}"
        );
    }

    #[test]
    fn partials_are_compared_by_how_far_they_got() {
        assert_eq!(
            words_of("Hi, I'm calling to change my reservation."),
            "hi im calling to change my reservation"
        );
        let (a, b) = ("hi im calling to change my reservation", "hi im calling for change my reservation");
        assert!(same_progress(a, b), "a flicker in the middle is no new speech");
        assert!(!same_progress(a, "hi im calling to change my reservation for"), "a word more");
        assert!(!same_progress(a, "hi im calling to change my reservations"), "the last word changed");
        assert!(same_progress("", ""));
        assert!(!same_progress("", "hi"));
        // A word split differently, or a number written either way, is no new speech.
        assert!(same_progress(&words_of("at eight o' clock"), &words_of("at 8 o'clock")));
        assert!(same_progress(
            &words_of("Can we make it 8 o'clock instead of 7?"),
            &words_of("Can we make it eight o'clock instead of seven?")
        ));
    }

    /// Starts and ends alternate and never go back in time.
    fn assert_in_order(times: &[(&'static str, Duration)]) {
        for (i, pair) in times.windows(2).enumerate() {
            assert_ne!(pair[0].0, pair[1].0, "{times:?}");
            assert!(pair[1].1 >= pair[0].1, "event {} goes back in time: {times:?}", i + 1);
        }
    }

    /// An empty partial after words is a dropout (the recogniser's no-speech rule on a stretch of
    /// babble), not the words gone: the utterance ends where its words stopped, with its final
    /// pass, never as noise.
    #[test]
    fn an_empty_partial_after_words_does_not_make_the_utterance_noise() {
        let metrics = Metrics::new();
        let stt = Scripted::with_partials();
        stt.script.lock().unwrap().extend(["i want to"]);
        stt.script.lock().unwrap().extend([""; 40]);
        let mut l = listening(&stt, &metrics);
        let audio = [silence(500), hello(), hello(), hello(), silence(1500)].concat();
        let events = run(&mut l, &audio, 0);
        let got: Vec<String> = finals(&events).into_iter().map(|f| f.1).collect();
        assert_eq!(got.first().map(String::as_str), Some("pass 1"), "{got:?}");
        assert!(!got.iter().any(String::is_empty), "{got:?}");
    }

    /// Quiet utterances trimmed and announced with partials coming back late (a slow engine):
    /// starts and ends stay in order.
    #[test]
    fn a_quiet_utterance_trimmed_while_a_partial_runs_stays_consistent() {
        for delay in [0, 7, 30, 60] {
            let metrics = Metrics::new();
            let stt = Scripted::with_partials();
            stt.script.lock().unwrap().extend(["hello there"; 4]);
            stt.script.lock().unwrap().extend([""; 12]);
            stt.script.lock().unwrap().extend(["and"]);
            let mut l = listening(&stt, &metrics);
            let audio = [silence(500), hello(), hello(), hello(), hello(), silence(1500)].concat();
            let events = run(&mut l, &audio, delay);
            let times = speech_times(&events);
            assert!(times.len() >= 2, "delay {delay}: {times:?}");
            assert_in_order(&times);
        }
    }
}
