//! The listening path of an agent call, per 20 ms frame at 16 kHz: denoise (per `denoisingMode`)
//! → VAD (Silero when its weights are present, else webrtc-vad) → speech-to-text.
//!
//! Speech-to-text never runs on the frame path: the utterance's audio is handed to the shared
//! engine (its own worker threads) and the result comes back as a future the listener polls
//! beside its inbox. While the caller speaks, partial hypotheses are re-decoded from the growing
//! utterance every [`PARTIAL_EVERY`] (first after [`FIRST_PARTIAL`]) when the engine is cheap
//! enough, one at a time; when the VAD ends the utterance, its final pass runs on the trimmed
//! audio (from [`PRE_ROLL`] before the first voiced frame to [`POST_ROLL`] after the last).
//!
//! Times are media time: the frame index × 20 ms, minus the denoiser's constant latency.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

use super::{ListenerEvent, PIPELINE_FRAME_SAMPLES};
use crate::audio::denoise::{DenoiseMode, Denoiser};
use crate::audio::tone::BeepDetector;
use crate::audio::vad::{SileroModel, Vad, VadConfig, VadEvent};
use crate::metrics::Metrics;
use crate::providers::stt::{SharedStt, SttQuality, SttRequest, Transcription};
use crate::providers::turn_detect::SmartTurn;

/// Audio kept before the VAD's speech start (its start is back-dated; words begin softly).
pub const PRE_ROLL: Duration = Duration::from_millis(200);
/// Audio kept after the VAD's speech end.
pub const POST_ROLL: Duration = Duration::from_millis(150);
/// The first partial hypothesis after this much speech.
pub const FIRST_PARTIAL: Duration = Duration::from_millis(400);
/// Then one every this much new speech (while none is in flight).
pub const PARTIAL_EVERY: Duration = Duration::from_millis(500);
/// An utterance longer than this is cut into segments (Whisper's window is 30 s).
pub const MAX_UTTERANCE: Duration = Duration::from_secs(25);
/// A voicemail beep is looked for during this much of the start of the call.
const BEEP_WINDOW: Duration = Duration::from_secs(60);
/// Recent denoised audio kept for the pre-roll (≥ the VAD's start delay + [`PRE_ROLL`]).
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
    Hint,
}

struct Utterance {
    seq: u64,
    start_frame: u64,
    samples: Vec<i16>,
    /// Samples at the last partial request.
    partial_at: usize,
}

/// One call's listening state.
pub struct Listening {
    setup: ListeningSetup,
    denoiser: Denoiser,
    denoised: Vec<i16>,
    vad: Vad,
    /// Frames processed (the next frame's index).
    frame: u64,
    latency: Duration,
    history: VecDeque<i16>,
    utterance: Option<Utterance>,
    next_seq: u64,
    partial_in_flight: bool,
    stt_partial: Histogram,
    stt_final: Histogram,
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
        Self {
            denoiser,
            denoised: vec![0; PIPELINE_FRAME_SAMPLES],
            vad,
            frame: 0,
            latency,
            history: VecDeque::with_capacity(frames(HISTORY) * PIPELINE_FRAME_SAMPLES),
            utterance: None,
            next_seq: 1,
            partial_in_flight: false,
            stt_partial: metrics.stt("partial"),
            stt_final: metrics.stt(final_pass),
            beep: Some(BeepDetector::new(crate::call::PIPELINE_RATE_HZ)),
            setup,
        }
    }

    fn at(&self, frame: u64) -> Duration {
        (FRAME * frame as u32).saturating_sub(self.latency)
    }

    /// Takes one 20 ms frame; pushes speech events to `events` and STT requests to `jobs`.
    pub fn on_frame(&mut self, frame: &[i16], events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        // On the raw audio: the denoiser would remove a steady tone.
        if let Some(detector) = self.beep.as_mut() {
            if let Some(b) = detector.push(frame) {
                events.push(ListenerEvent::Beep { hz: b.hz, at: FRAME * (self.frame as u32 + 1) });
            }
            if self.frame >= frames(BEEP_WINDOW) as u64 {
                self.beep = None;
            }
        }
        self.denoiser.process(frame, &mut self.denoised);
        let (_prob, event) = self.vad.process(&self.denoised);
        let index = self.frame;
        self.frame += 1;
        if self.history.len() + PIPELINE_FRAME_SAMPLES > self.history.capacity() {
            self.history.drain(..PIPELINE_FRAME_SAMPLES);
        }
        self.history.extend(self.denoised.iter().copied());

        if let Some(u) = self.utterance.as_mut() {
            u.samples.extend_from_slice(&self.denoised);
        }
        match event {
            Some(VadEvent::SpeechStart { frame }) => self.start_utterance(frame, index, events),
            Some(VadEvent::SpeechEnd { frame }) => self.end_utterance(frame, events, jobs),
            None => {}
        }
        let Some(u) = self.utterance.as_ref() else { return };
        let len = Duration::from_millis(u.samples.len() as u64 / 16);
        if len >= MAX_UTTERANCE {
            // Cut a very long utterance into segments; the caller is still speaking.
            self.end_utterance(index, events, jobs);
            self.start_utterance(index, index, events);
            return;
        }
        self.maybe_partial(jobs);
    }

    fn start_utterance(&mut self, start: u64, now: u64, events: &mut Vec<ListenerEvent>) {
        // From PRE_ROLL before the first voiced frame, as far as history reaches.
        let back = (now - start) as usize + 1 + frames(PRE_ROLL);
        let take = (back * PIPELINE_FRAME_SAMPLES).min(self.history.len());
        let samples: Vec<i16> = self.history.iter().skip(self.history.len() - take).copied().collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.utterance = Some(Utterance { seq, start_frame: start, samples, partial_at: 0 });
        events.push(ListenerEvent::SpeechStarted { at: self.at(start) });
    }

    fn end_utterance(&mut self, end: u64, events: &mut Vec<ListenerEvent>, jobs: &mut Vec<SttJob>) {
        let Some(mut u) = self.utterance.take() else { return };
        // Keep POST_ROLL after the last voiced frame; drop the rest of the hangover.
        let after_end = (self.frame.saturating_sub(end)) as usize;
        let drop_frames = after_end.saturating_sub(frames(POST_ROLL));
        let keep = u.samples.len().saturating_sub(drop_frames * PIPELINE_FRAME_SAMPLES);
        u.samples.truncate(keep);
        let (start, end_at) = (self.at(u.start_frame), self.at(end));
        events.push(ListenerEvent::SpeechEnded { at: end_at });
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
                SttDone { seq, kind: JobKind::Hint, start, end: end_at, result: JobResult::Hint(p) }
            }));
        }
        match &self.setup.stt {
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
        if self.partial_in_flight {
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

    /// A speech-to-text request finished: the event it makes, if still relevant.
    pub fn on_stt(&mut self, done: SttDone) -> Option<ListenerEvent> {
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
                let current = self.utterance.as_ref().is_some_and(|u| u.seq == done.seq);
                (current && !t.text.trim().is_empty())
                    .then(|| ListenerEvent::Partial { text: t.text, at: self.at(self.frame) })
            }
            JobKind::Final => {
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
    }
}

fn to_f32(samples: &[i16]) -> Arc<[f32]> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

fn job(stt: SharedStt, req: SttRequest, seq: u64, kind: JobKind, start: Duration, end: Duration) -> SttJob {
    Box::pin(async move {
        let result = JobResult::Stt(stt.transcribe(req).await);
        SttDone { seq, kind, start, end, result }
    })
}
