//! Voice activity detection on the caller's 16 kHz audio: one speech probability per 20 ms
//! frame from an engine, then a frame-accurate segmenter turning probabilities into
//! `SpeechStart` / `SpeechEnd` events.
//!
//! ```text
//! silero         SileroModel (native engine or onnxruntime sessions) + per-call streaming state
//! silero_native  Silero's forward pass in plain Rust (weights read from the ONNX file)
//! dense          its one kernel: a dense layer over a few windows (AVX2+FMA or portable)
//! onnx_weights   reads float initializers out of an ONNX file (protobuf wire format)
//! webrtc         libfvad (webrtc-vad crate): boolean per frame, the fallback and Silero's gate
//! segmenter      pure state machine: thresholds with hysteresis, minimum speech, hangover
//! ```
//!
//! # Engines
//! - **Silero VAD v6** (default when `models/vad/silero_vad_op18_ifless.onnx` is present, see
//!   [`default_engine`]): a small LSTM run on 512-sample chunks (32 ms). Frames are 320
//!   samples, so frames are buffered and a chunk runs whenever 512 samples are ready — on 5 of
//!   every 8 frames. Each frame reports the probability of the
//!   latest chunk run, whose end lies at most 511 samples (< 32 ms) before the end of the
//!   frame: that is the engine's extra decision delay. The weights are shared by all calls (one
//!   [`SileroModel`] per process); the per-call state (LSTM state, 64-sample context, the chunk
//!   being filled) is ≈ 3.3 KiB. The model runs on the native engine (plain Rust, no
//!   allocation, no lock) unless that cannot read the file, then on onnxruntime (which
//!   allocates its output tensors inside each run); [`SileroModel::load_with_sessions`] picks
//!   onnxruntime explicitly. See [`SileroModel`]'s module for the two engines.
//! - **webrtc-vad** (libfvad), mode [`WebRtcMode::Aggressive`] by default: its yes/no becomes
//!   probability 1.0/0.0. Needs no files; costs ≈ 1–2 µs per frame.
//!
//! # Gating Silero behind webrtc-vad
//! With [`VadConfig::gate_with_webrtc`] (default on), webrtc-vad runs on every frame and a
//! Silero chunk is only run while the gate is open: webrtc-vad heard voice within the last
//! [`Vad::GATE_HOLD_MS`], or the segmenter is not idle (a voiced run or a speech segment is
//! under way, so its end is decided by Silero alone). While closed, frames still fill the chunk
//! buffer (so the 64-sample context is always the true preceding audio), completed chunks are
//! skipped with probability 0, and the LSTM state is zeroed before the next run: after a skip
//! the state no longer follows the audio, and a fresh state is what the model sees at the start
//! of every stream (Silero's own iterator resets per stream), whereas a kept state would still
//! describe the end of the previous utterance. Measured (tests/vad.rs, benches/README.md): same
//! segments as ungated to within 40 ms on the fixtures; on speech with 3 s pauses 54 % of the
//! chunks run and the cost per frame halves.
//!
//! # Segmenting
//! See [`Segmenter`] for the exact rules. Event frames count 20 ms frames from 0
//! since construction or [`Vad::reset`]: `SpeechStart` is dated to the first voiced frame of the
//! run that started speech (emitted `min_speech_ms` later), `SpeechEnd` to the first silent
//! frame of the run that ended it (emitted `hangover_ms` later). With Silero, a frame's evidence
//! is a 32 ms chunk that may have begun one or two frames earlier, and events are dated to the
//! frame in which that chunk began (measured on `caller-hello`: onset error +30 ms instead of
//! +70 ms when dated to the frame reporting it).

mod dense;
mod onnx_weights;
mod segmenter;
mod silero;
mod silero_native;
mod webrtc;

use std::path::Path;
use std::sync::Arc;

pub use self::segmenter::Segmenter;
use self::silero::SileroDetector;
pub use self::silero::{SileroEngine, SileroModel};
use self::webrtc::WebRtcDetector;
pub use self::webrtc::WebRtcMode;
use crate::providers::onnx::OnnxError;

/// VAD construction and inference faults.
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error("Silero VAD: {0}")]
    Onnx(#[from] OnnxError),
    #[error("Silero VAD model {}: expected inputs input, state, sr and outputs output, stateN (any order), found inputs {inputs:?} and outputs {outputs:?}", path.display())]
    Signature { path: std::path::PathBuf, inputs: Vec<String>, outputs: Vec<String> },
    #[error(
        "Silero VAD run needs {} input samples and {} state values, got {input} and {state}",
        SileroModel::INPUT_SAMPLES,
        SileroModel::STATE_LEN
    )]
    InputShape { input: usize, state: usize },
    #[error(
        "Silero VAD returned {output} probabilities and {state} state values (expected 1 and {})",
        SileroModel::STATE_LEN
    )]
    OutputShape { output: usize, state: usize },
    #[error("Silero VAD model {}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("Silero VAD model {}: cannot read the weights: {reason}", path.display())]
    Weights { path: std::path::PathBuf, reason: String },
    #[error("Silero VAD inference: {0}")]
    Inference(#[source] ort::Error),
}

/// Result alias for this module.
pub type Result<T, E = VadError> = std::result::Result<T, E>;

/// Which engine a [`Vad`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadKind {
    WebRtc,
    Silero,
}

/// Segmenter and engine settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// A frame with probability ≥ this is voiced (counts towards starting speech). Default 0.5,
    /// Silero's own default. webrtc-vad gives only 0 or 1, so any value in (0, 1] behaves alike.
    pub start_threshold: f32,
    /// During speech, a frame with probability < this is silent (counts towards ending it).
    /// Default 0.35 (Silero's `threshold − 0.15`); values above `start_threshold` are lowered to it.
    pub end_threshold: f32,
    /// Voiced frames in a row needed to start speech, in ms (rounded up to 20 ms frames, at least
    /// one). Filters clicks and short noises; delays the event (not its date). Default 100 ms.
    pub min_speech_ms: u32,
    /// Silent frames in a row needed to end speech, in ms (rounded up to frames, at least one).
    /// Bridges pauses between words; delays the event (not its date). Default 300 ms. Turn-end
    /// policy (how long a pause ends the caller's turn) is the turn state machine's business.
    pub hangover_ms: u32,
    /// Silero only: skip Silero while webrtc-vad hears nothing and the segmenter is idle (see
    /// the module docs). Default on.
    pub gate_with_webrtc: bool,
    /// webrtc-vad aggressiveness, for the webrtc engine and the gate. Default `Aggressive`.
    pub webrtc_mode: WebRtcMode,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            start_threshold: 0.5,
            end_threshold: 0.35,
            min_speech_ms: 100,
            hangover_ms: 300,
            gate_with_webrtc: true,
            webrtc_mode: WebRtcMode::Aggressive,
        }
    }
}

/// A speech boundary, dated by 20 ms frame index (frame 0 = the first frame processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech started at `frame`: the first voiced frame of the run that started it.
    SpeechStart { frame: u64 },
    /// Speech ended at `frame`: the first silent frame of the run that ended it.
    SpeechEnd { frame: u64 },
}

/// Counters of one detector since construction or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VadStats {
    /// Frames processed.
    pub frames: u64,
    /// Silero chunks run (0 for webrtc-vad).
    pub chunks_run: u64,
    /// Silero chunks skipped by the webrtc gate.
    pub chunks_skipped: u64,
    /// Silero runs that failed (each counted as silence; the first few are logged).
    pub inference_errors: u64,
}

/// A per-call voice activity detector: engine + segmenter. Not `Sync`; one per call.
#[derive(Debug)]
pub struct Vad {
    /// The engine producing one probability per frame.
    detector: Detector,
    /// Probabilities → events.
    segmenter: Segmenter,
    /// Frames of the wrong length are copied here, zero-padded or truncated.
    scratch: [i16; Vad::FRAME_SAMPLES],
}

/// Engines, dispatched per frame by `match` (no `dyn`).
enum Detector {
    WebRtc(WebRtcDetector),
    Silero { silero: Box<SileroDetector>, gate: Option<Gate> },
}

/// webrtc-vad in front of Silero.
struct Gate {
    webrtc: WebRtcDetector,
    /// Frames since webrtc-vad last reported voice (saturating).
    quiet_frames: u32,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WebRtc(w) => f.debug_tuple("WebRtc").field(w).finish(),
            Self::Silero { gate, .. } => f.debug_struct("Silero").field("gated", &gate.is_some()).finish(),
        }
    }
}

impl Vad {
    /// Samples per frame: 20 ms at 16 kHz.
    pub const FRAME_SAMPLES: usize = 320;
    /// Frame duration.
    pub const FRAME_MS: u32 = 20;
    /// The only input rate.
    pub const SAMPLE_RATE_HZ: u32 = 16_000;
    /// With the gate on, Silero keeps running this long after webrtc-vad last heard voice.
    pub const GATE_HOLD_MS: u32 = 200;
    const GATE_HOLD_FRAMES: u32 = Self::GATE_HOLD_MS / Self::FRAME_MS;

    /// webrtc-vad engine.
    pub fn webrtc(cfg: VadConfig) -> Self {
        Self::with_detector(Detector::WebRtc(WebRtcDetector::new(cfg.webrtc_mode)), cfg)
    }

    /// Silero engine on the shared `model`, gated by webrtc-vad if `cfg.gate_with_webrtc`.
    pub fn silero(model: &Arc<SileroModel>, cfg: VadConfig) -> Self {
        let gate = cfg
            .gate_with_webrtc
            .then(|| Gate { webrtc: WebRtcDetector::new(cfg.webrtc_mode), quiet_frames: u32::MAX });
        let silero = Box::new(SileroDetector::new(Arc::clone(model)));
        Self::with_detector(Detector::Silero { silero, gate }, cfg)
    }

    /// Silero if a model is given (e.g. from [`default_engine`]), else webrtc-vad.
    pub fn with_engine(model: Option<&Arc<SileroModel>>, cfg: VadConfig) -> Self {
        match model {
            Some(model) => Self::silero(model, cfg),
            None => Self::webrtc(cfg),
        }
    }

    fn with_detector(detector: Detector, cfg: VadConfig) -> Self {
        let segmenter = Segmenter::new(
            cfg.start_threshold,
            cfg.end_threshold,
            cfg.min_speech_ms,
            cfg.hangover_ms,
            Self::FRAME_MS,
        );
        Self { detector, segmenter, scratch: [0; Self::FRAME_SAMPLES] }
    }

    /// One 20 ms frame at 16 kHz ([`Self::FRAME_SAMPLES`] samples; other lengths are
    /// zero-padded or truncated). Returns the frame's speech probability and at most one event.
    pub fn process(&mut self, frame: &[i16]) -> (f32, Option<VadEvent>) {
        let frame = if frame.len() == Self::FRAME_SAMPLES {
            frame
        } else {
            let n = frame.len().min(Self::FRAME_SAMPLES);
            self.scratch[..n].copy_from_slice(&frame[..n]);
            self.scratch[n..].fill(0);
            &self.scratch[..]
        };
        let this_frame = self.segmenter.next_frame();
        let (prob, origin) = match &mut self.detector {
            Detector::WebRtc(webrtc) => (if webrtc.is_voice(frame) { 1.0 } else { 0.0 }, None),
            Detector::Silero { silero, gate: None } => silero.push(frame, true),
            Detector::Silero { silero, gate: Some(gate) } => {
                gate.quiet_frames =
                    if gate.webrtc.is_voice(frame) { 0 } else { gate.quiet_frames.saturating_add(1) };
                let open = gate.quiet_frames < Self::GATE_HOLD_FRAMES || !self.segmenter.is_quiet();
                silero.push(frame, open)
            }
        };
        (prob, self.segmenter.push_at(prob, origin.unwrap_or(this_frame)))
    }

    /// Which engine runs.
    pub fn kind(&self) -> VadKind {
        match self.detector {
            Detector::WebRtc(_) => VadKind::WebRtc,
            Detector::Silero { .. } => VadKind::Silero,
        }
    }

    /// True between a `SpeechStart` and its `SpeechEnd`.
    pub fn in_speech(&self) -> bool {
        self.segmenter.in_speech()
    }

    /// See [`Segmenter::pending_end`].
    pub fn pending_end(&self) -> Option<u64> {
        self.segmenter.pending_end()
    }

    /// Counters since construction or reset.
    pub fn stats(&self) -> VadStats {
        let frames = self.segmenter.next_frame();
        match &self.detector {
            Detector::WebRtc(_) => VadStats { frames, ..VadStats::default() },
            Detector::Silero { silero, .. } => VadStats {
                frames,
                chunks_run: silero.chunks_run,
                chunks_skipped: silero.chunks_skipped,
                inference_errors: silero.errors,
            },
        }
    }

    /// Back to the state of a new detector: frame 0, idle, fresh engine state.
    pub fn reset(&mut self) {
        match &mut self.detector {
            Detector::WebRtc(webrtc) => webrtc.reset(),
            Detector::Silero { silero, gate } => {
                silero.reset();
                if let Some(gate) = gate {
                    gate.webrtc.reset();
                    gate.quiet_frames = u32::MAX;
                }
            }
        }
        self.segmenter.reset();
    }
}

/// The engine for new calls: Silero when its weights and the onnxruntime library load from
/// `models_dir`, else `None` (callers then use webrtc-vad). Logs which, and why.
pub fn default_engine(models_dir: &Path) -> Option<Arc<SileroModel>> {
    match SileroModel::load(models_dir) {
        Ok(model) => {
            tracing::info!(
                model = %model.path().display(),
                engine = ?model.engine(),
                sessions = model.sessions(),
                "VAD engine: Silero"
            );
            Some(model)
        }
        Err(err) => {
            tracing::warn!(error = %err, "VAD engine: webrtc-vad (Silero unavailable)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testutil::{fixture_l16, sine};

    fn model() -> Arc<SileroModel> {
        static MODEL: std::sync::OnceLock<Arc<SileroModel>> = std::sync::OnceLock::new();
        let dir = std::env::var_os("SWITCHBOARD_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        Arc::clone(
            MODEL.get_or_init(|| {
                SileroModel::load(&dir).unwrap_or_else(|e| panic!("{e} (run `make models`)"))
            }),
        )
    }

    /// (probabilities, events) of `samples` in whole frames.
    fn run(vad: &mut Vad, samples: &[i16]) -> (Vec<f32>, Vec<VadEvent>) {
        let mut events = Vec::new();
        let probs = samples
            .chunks_exact(Vad::FRAME_SAMPLES)
            .map(|f| {
                let (p, e) = vad.process(f);
                events.extend(e);
                p
            })
            .collect();
        (probs, events)
    }

    #[test]
    fn webrtc_on_silence_tone_and_speech_in_every_mode() {
        let silence = vec![0i16; 16_000];
        let tone = sine(440.0, 16_000, 16_000, 8_000.0);
        let speech = fixture_l16("caller-question.l16-16k.wav");
        for mode in
            [WebRtcMode::Quality, WebRtcMode::LowBitrate, WebRtcMode::Aggressive, WebRtcMode::VeryAggressive]
        {
            let cfg = VadConfig { webrtc_mode: mode, ..VadConfig::default() };
            let mut vad = Vad::webrtc(cfg);
            assert_eq!(vad.kind(), VadKind::WebRtc);
            let (probs, events) = run(&mut vad, &silence);
            assert!(probs.iter().all(|&p| p == 0.0) && events.is_empty(), "{mode:?} silence");

            // A steady 440 Hz tone at −12 dBFS looks like voice to the sub-band energy model.
            let mut vad = Vad::webrtc(cfg);
            let (probs, events) = run(&mut vad, &tone);
            let voiced = probs.iter().filter(|&&p| p == 1.0).count();
            assert!(voiced >= probs.len() * 9 / 10, "{mode:?} tone: {voiced} of {}", probs.len());
            assert_eq!(events, vec![VadEvent::SpeechStart { frame: 0 }], "{mode:?} tone");

            let mut vad = Vad::webrtc(cfg);
            let (probs, events) = run(&mut vad, &speech);
            let voiced = probs.iter().filter(|&&p| p == 1.0).count();
            assert!(voiced > probs.len() / 2, "{mode:?} speech: {voiced} of {}", probs.len());
            // Speech begins in frame 10. The fixture's leading 200 ms are sox's ±1 LSB dither,
            // which modes 0 and 1 already call voice (measured: a start at frame 0).
            let VadEvent::SpeechStart { frame } = events[0] else { panic!("{mode:?}: {events:?}") };
            match mode {
                WebRtcMode::Quality | WebRtcMode::LowBitrate => assert!(frame <= 11, "{mode:?}: {events:?}"),
                _ => assert!((9..=11).contains(&frame), "{mode:?}: {events:?}"),
            }
        }
    }

    #[test]
    fn silero_on_silence_is_low_and_on_speech_high() {
        let cfg = VadConfig { gate_with_webrtc: false, ..VadConfig::default() };
        let mut vad = Vad::silero(&model(), cfg);
        assert_eq!(vad.kind(), VadKind::Silero);
        let (probs, events) = run(&mut vad, &vec![0i16; 32_000]);
        assert!(probs.iter().all(|&p| p < 0.05), "{probs:?}");
        assert!(events.is_empty());
        // 100 frames = 32 000 samples = 62.5 chunks.
        assert_eq!(
            vad.stats(),
            VadStats { frames: 100, chunks_run: 62, chunks_skipped: 0, inference_errors: 0 }
        );

        let speech = fixture_l16("caller-question.l16-16k.wav");
        let (probs, _) = run(&mut vad, &speech);
        let high = probs.iter().filter(|&&p| p > 0.9).count();
        assert!(high > probs.len() * 3 / 4, "{high} of {}", probs.len());
    }

    #[test]
    fn gate_skips_silero_in_silence_and_not_in_speech() {
        let mut vad = Vad::silero(&model(), VadConfig::default());
        run(&mut vad, &vec![0i16; 32_000]);
        assert_eq!(vad.stats().chunks_run, 0);
        assert_eq!(vad.stats().chunks_skipped, 62);

        let speech = fixture_l16("caller-question.l16-16k.wav");
        let (_, events) = run(&mut vad, &speech);
        assert!(matches!(events[..], [VadEvent::SpeechStart { .. }, ..]), "{events:?}");
        let stats = vad.stats();
        // Speech is 2.8 s of the 3.5 s: at least that much is run (87 chunks).
        assert!(stats.chunks_run >= 87, "{stats:?}");
    }

    #[test]
    fn odd_frame_lengths_are_padded_or_truncated() {
        for len in [0usize, 160, 319, 321, 640] {
            let mut vad = Vad::webrtc(VadConfig::default());
            let frame = sine(440.0, 16_000, len, 8_000.0);
            for _ in 0..10 {
                vad.process(&frame);
            }
            assert_eq!(vad.stats().frames, 10, "{len}");
        }
    }

    #[test]
    fn reset_replays_identically() {
        let speech = fixture_l16("caller-hello.l16-16k.wav");
        for mut vad in [Vad::webrtc(VadConfig::default()), Vad::silero(&model(), VadConfig::default())] {
            let first = run(&mut vad, &speech);
            vad.reset();
            assert_eq!(vad.stats().frames, 0);
            assert!(!vad.in_speech());
            assert_eq!(run(&mut vad, &speech), first, "{:?}", vad.kind());
        }
    }

    #[test]
    fn default_engine_falls_back_to_webrtc_without_models() {
        let dir = tempfile::tempdir().unwrap();
        let engine = default_engine(dir.path());
        assert!(engine.is_none());
        assert_eq!(Vad::with_engine(engine.as_ref(), VadConfig::default()).kind(), VadKind::WebRtc);
        assert_eq!(Vad::with_engine(Some(&model()), VadConfig::default()).kind(), VadKind::Silero);
    }

    #[test]
    fn vad_is_small_and_send() {
        fn send<T: Send>() {}
        send::<Vad>();
        assert!(std::mem::size_of::<Vad>() <= 1024, "{}", std::mem::size_of::<Vad>());
    }
}
