//! Silero VAD v6 (`silero_vad_op18_ifless.onnx`): the shared model handle ([`SileroModel`])
//! with its two engines, and the per-call streaming state ([`SileroDetector`]).
//!
//! Streaming protocol of the model at 16 kHz: each run takes `input` f32 `[1, 576]` = the last
//! 64 samples of the previous chunk followed by 512 new samples (32 ms), `state` f32
//! `[2, 1, 128]` (the LSTM state returned by the previous run, zeros at the start) and `sr` i64
//! scalar 16000; it returns `output` f32 `[1, 1]` (speech probability of the chunk) and `stateN`
//! `[2, 1, 128]`.
//!
//! # Engines
//! Both read the same ONNX file, so both run the same weights.
//! - [`SileroEngine::Native`] (the default, [`SileroModel::load`]): the forward pass in plain
//!   Rust ([`super::silero_native`]), weights packed once per process, AVX2+FMA when the CPU has
//!   them. A run allocates nothing and takes no lock, so any number of calls run it at once.
//!   Needs no onnxruntime library. Probabilities agree with onnxruntime to ≈ 1e-5
//!   (tests/vad.rs), ≈ 4× faster per run (benches/vad.rs).
//! - [`SileroEngine::Onnxruntime`] ([`SileroModel::load_with_sessions`]): onnxruntime sessions.
//!   `Session::run` takes `&mut self` (onnxruntime's `Run` is not safe to call concurrently on
//!   one session), so each session sits behind a `Mutex`; with one session per core calls
//!   rarely wait, and each waits at most one run. Kept as the reference the native engine is
//!   tested against, and as the fallback if the native engine cannot read the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

use super::silero_native::NativeSilero;
use super::{Result, VadError};
use crate::providers::onnx;

/// The Silero VAD weights, shared by every call, loaded into one of two engines.
pub struct SileroModel {
    /// What runs the model.
    engine: Engine,
    /// The model file, for logs and errors.
    path: PathBuf,
}

/// Which engine a [`SileroModel`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SileroEngine {
    /// The pure-Rust forward pass.
    Native,
    /// onnxruntime sessions.
    Onnxruntime,
}

enum Engine {
    Native(Box<NativeSilero>),
    Onnxruntime(OrtPool),
}

/// A small pool of onnxruntime sessions (see the module docs).
struct OrtPool {
    /// One session per core by default; a run locks one.
    sessions: Box<[Mutex<Session>]>,
    /// Round-robin start point, so concurrent callers try different sessions first.
    next: AtomicUsize,
    /// Where the model wants each input: `input_order[k]` is the role (0 `input`, 1 `state`,
    /// 2 `sr`) of its k-th input. This file declares `input, sr, state`; found by name at load.
    input_order: [usize; 3],
    /// Positions of `output` and `stateN` among the outputs.
    output_at: [usize; 2],
}

/// Samples in the `sr` input (the model is run at 16 kHz only).
static SAMPLE_RATE: [i64; 1] = [SileroModel::SAMPLE_RATE_HZ];

impl SileroModel {
    /// The model file inside the models directory.
    pub const MODEL_FILE: &'static str = "vad/silero_vad_op18_ifless.onnx";
    /// New samples per run (32 ms at 16 kHz).
    pub const CHUNK_SAMPLES: usize = 512;
    /// Samples of the previous chunk prepended to each run.
    pub const CONTEXT_SAMPLES: usize = 64;
    /// Length of one run's `input`: context + chunk.
    pub const INPUT_SAMPLES: usize = Self::CONTEXT_SAMPLES + Self::CHUNK_SAMPLES;
    /// Values in the LSTM state `[2, 1, 128]`.
    pub const STATE_LEN: usize = 2 * 128;
    /// The only rate this engine runs at.
    pub const SAMPLE_RATE_HZ: i64 = 16_000;

    /// Loads the model on the default engine: native, or onnxruntime (one session per core,
    /// at most 4) if the native engine cannot read the file.
    pub fn load(models_dir: &Path) -> Result<Arc<Self>> {
        match Self::load_native(models_dir) {
            // A missing or unreadable file is missing for onnxruntime too.
            Ok(model) => Ok(model),
            Err(err @ VadError::Io { .. }) => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "Silero VAD: native engine unavailable, trying onnxruntime");
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                Self::load_with_sessions(models_dir, cores.min(4))
            }
        }
    }

    /// Loads the model on the native engine.
    pub fn load_native(models_dir: &Path) -> Result<Arc<Self>> {
        let path = models_dir.join(Self::MODEL_FILE);
        let native = NativeSilero::load(&path)?;
        Ok(Arc::new(Self { engine: Engine::Native(Box::new(native)), path }))
    }

    /// Loads the model on onnxruntime, into `sessions` (≥ 1) single-threaded sessions.
    pub fn load_with_sessions(models_dir: &Path, sessions: usize) -> Result<Arc<Self>> {
        onnx::runtime(models_dir)?;
        let path = models_dir.join(Self::MODEL_FILE);
        let sessions = (0..sessions.max(1))
            .map(|_| Ok(Mutex::new(onnx::session(&path, 1)?)))
            .collect::<Result<Box<[_]>>>()?;
        let (input_order, output_at) =
            signature(&sessions[0].lock().unwrap_or_else(PoisonError::into_inner), &path)?;
        let pool = OrtPool { sessions, next: AtomicUsize::new(0), input_order, output_at };
        Ok(Arc::new(Self { engine: Engine::Onnxruntime(pool), path }))
    }

    /// The engine this model runs on.
    pub fn engine(&self) -> SileroEngine {
        match self.engine {
            Engine::Native(_) => SileroEngine::Native,
            Engine::Onnxruntime(_) => SileroEngine::Onnxruntime,
        }
    }

    /// Number of onnxruntime sessions in the pool (0 on the native engine, which needs none).
    pub fn sessions(&self) -> usize {
        match &self.engine {
            Engine::Native(_) => 0,
            Engine::Onnxruntime(pool) => pool.sessions.len(),
        }
    }

    /// The model file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One streaming step: `input` is [`Self::INPUT_SAMPLES`] samples in [-1, 1] (context +
    /// chunk); `state` ([`Self::STATE_LEN`] values) is read and replaced by the new state.
    /// Returns the chunk's speech probability.
    pub fn run_chunk(&self, input: &[f32], state: &mut [f32]) -> Result<f32> {
        let shape_err = VadError::InputShape { input: input.len(), state: state.len() };
        match &self.engine {
            Engine::Native(native) => {
                match (<&[f32; Self::INPUT_SAMPLES]>::try_from(input), state.try_into()) {
                    (Ok(x), Ok(st)) => Ok(native.run_chunk(x, st)),
                    _ => Err(shape_err),
                }
            }
            Engine::Onnxruntime(pool) => {
                if input.len() != Self::INPUT_SAMPLES || state.len() != Self::STATE_LEN {
                    return Err(shape_err);
                }
                pool.run_chunk(input, state)
            }
        }
    }

    /// Reference run over a whole recording: fresh state, zero context, one probability per
    /// complete 512-sample chunk (a trailing partial chunk is ignored). Allocates; for tests,
    /// tools and benches, not the per-frame path.
    pub fn probabilities(&self, samples: &[i16]) -> Result<Vec<f32>> {
        let mut input = vec![0.0f32; Self::INPUT_SAMPLES];
        let mut state = vec![0.0f32; Self::STATE_LEN];
        samples
            .chunks_exact(Self::CHUNK_SAMPLES)
            .map(|chunk| {
                for (dst, &s) in input[Self::CONTEXT_SAMPLES..].iter_mut().zip(chunk) {
                    *dst = to_f32(s);
                }
                let prob = self.run_chunk(&input, &mut state)?;
                input.copy_within(Self::CHUNK_SAMPLES.., 0);
                Ok(prob)
            })
            .collect()
    }
}

impl OrtPool {
    /// One run on a free session; shapes were checked by the caller.
    fn run_chunk(&self, input: &[f32], state: &mut [f32]) -> Result<f32> {
        let mut session = self.session();
        let x = TensorRef::from_array_view(([1usize, SileroModel::INPUT_SAMPLES], input))
            .map_err(VadError::Inference)?;
        let h = TensorRef::from_array_view(([2usize, 1, 128], &*state)).map_err(VadError::Inference)?;
        let sr = TensorRef::from_array_view(((), &SAMPLE_RATE[..])).map_err(VadError::Inference)?;
        let mut by_role = [Some(x.into()), Some(h.into()), Some(sr.into())];
        let inputs: [SessionInputValue<'_>; 3] =
            self.input_order.map(|role| by_role[role].take().expect("a permutation"));
        let outputs = session.run(inputs).map_err(VadError::Inference)?;
        let (_, prob) =
            outputs[self.output_at[0]].try_extract_tensor::<f32>().map_err(VadError::Inference)?;
        let (_, new_state) =
            outputs[self.output_at[1]].try_extract_tensor::<f32>().map_err(VadError::Inference)?;
        if prob.len() != 1 || new_state.len() != SileroModel::STATE_LEN {
            return Err(VadError::OutputShape { output: prob.len(), state: new_state.len() });
        }
        state.copy_from_slice(new_state);
        Ok(prob[0])
    }

    /// A free session if there is one (trying each once from a rotating start), else waits
    /// for the start one. A poisoned lock is taken over: a session has no state between runs.
    fn session(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroModel")
            .field("path", &self.path)
            .field("engine", &self.engine())
            .field("sessions", &self.sessions())
            .finish()
    }
}

/// The model must take exactly `input`, `state` and `sr` and give `output` and `stateN`, in
/// any order; returns where each one is (runs pass inputs and read outputs by position).
fn signature(session: &Session, path: &Path) -> Result<([usize; 3], [usize; 2])> {
    let inputs: Vec<String> = session.inputs().iter().map(|o| o.name().to_owned()).collect();
    let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_owned()).collect();
    let role = |name: &str| ["input", "state", "sr"].iter().position(|r| *r == name);
    let at = |name: &str| outputs.iter().position(|o| o == name);
    let mut order = [0usize; 3];
    let mut seen = [false; 3];
    let inputs_ok = inputs.len() == 3
        && inputs.iter().zip(&mut order).all(|(name, slot)| match role(name) {
            Some(r) if !seen[r] => {
                seen[r] = true;
                *slot = r;
                true
            }
            _ => false,
        });
    match (inputs_ok, outputs.len(), at("output"), at("stateN")) {
        (true, 2, Some(output), Some(state)) => Ok((order, [output, state])),
        _ => Err(VadError::Signature { path: path.to_path_buf(), inputs, outputs }),
    }
}

/// i16 sample → f32 in [-1, 1).
fn to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Per-call Silero streaming state: the 64-sample context, the chunk being filled and the LSTM
/// state (≈ 3.3 KiB, boxed by the caller).
pub(super) struct SileroDetector {
    /// The shared sessions.
    model: Arc<SileroModel>,
    /// `[context (64) | chunk (512)]`; the chunk part holds `filled` valid samples.
    input: [f32; SileroModel::INPUT_SAMPLES],
    /// Valid samples in the chunk part of `input`, always `< CHUNK_SAMPLES` between frames.
    filled: usize,
    /// LSTM state carried from run to run.
    state: [f32; SileroModel::STATE_LEN],
    /// Set when chunks were skipped (gated): the state no longer follows the audio and is
    /// zeroed before the next run, as at the start of a stream.
    state_stale: bool,
    /// Probability of the latest chunk run (0 after a skipped chunk).
    prob: f32,
    /// Samples pushed since construction or reset.
    samples: u64,
    /// Index of the 20 ms frame in which the latest completed chunk began; `None` before the
    /// first chunk.
    chunk_origin: Option<u64>,
    /// Chunks run / skipped / failed, for the gate's cost accounting and logs.
    pub(super) chunks_run: u64,
    pub(super) chunks_skipped: u64,
    pub(super) errors: u64,
}

impl SileroDetector {
    pub(super) fn new(model: Arc<SileroModel>) -> Self {
        Self {
            model,
            input: [0.0; SileroModel::INPUT_SAMPLES],
            filled: 0,
            state: [0.0; SileroModel::STATE_LEN],
            state_stale: false,
            prob: 0.0,
            samples: 0,
            chunk_origin: None,
            chunks_run: 0,
            chunks_skipped: 0,
            errors: 0,
        }
    }

    /// Appends one frame; every chunk it completes is run (`infer`) or skipped. Returns the
    /// probability of the latest chunk, which ends at most 511 samples (< 32 ms) before the end
    /// of this frame, and the index of the frame in which that chunk began (`None` before the
    /// first chunk), counting frames of [`Vad::FRAME_SAMPLES`](super::Vad::FRAME_SAMPLES).
    pub(super) fn push(&mut self, frame: &[i16], infer: bool) -> (f32, Option<u64>) {
        let mut rest = frame;
        while !rest.is_empty() {
            let at = SileroModel::CONTEXT_SAMPLES + self.filled;
            let take = rest.len().min(SileroModel::CHUNK_SAMPLES - self.filled);
            for (dst, &s) in self.input[at..at + take].iter_mut().zip(&rest[..take]) {
                *dst = to_f32(s);
            }
            self.filled += take;
            self.samples += take as u64;
            rest = &rest[take..];
            if self.filled == SileroModel::CHUNK_SAMPLES {
                let start = self.samples - SileroModel::CHUNK_SAMPLES as u64;
                self.chunk_origin = Some(start / super::Vad::FRAME_SAMPLES as u64);
                if infer {
                    self.run();
                } else {
                    self.chunks_skipped += 1;
                    self.state_stale = true;
                    self.prob = 0.0;
                }
                // The last 64 samples of this chunk are the next run's context.
                self.input.copy_within(SileroModel::CHUNK_SAMPLES.., 0);
                self.filled = 0;
            }
        }
        (self.prob, self.chunk_origin)
    }

    fn run(&mut self) {
        if self.state_stale {
            self.state = [0.0; SileroModel::STATE_LEN];
            self.state_stale = false;
        }
        self.chunks_run += 1;
        match self.model.run_chunk(&self.input, &mut self.state) {
            Ok(prob) => self.prob = prob,
            Err(err) => {
                // Not expected once the model loaded; log the first few, count the rest.
                self.errors += 1;
                if self.errors <= 3 {
                    tracing::warn!(error = %err, errors = self.errors, "silero VAD run failed; frame treated as silence");
                }
                self.prob = 0.0;
            }
        }
    }

    pub(super) fn reset(&mut self) {
        self.input = [0.0; SileroModel::INPUT_SAMPLES];
        self.filled = 0;
        self.state = [0.0; SileroModel::STATE_LEN];
        self.state_stale = false;
        self.prob = 0.0;
        self.samples = 0;
        self.chunk_origin = None;
        self.chunks_run = 0;
        self.chunks_skipped = 0;
        self.errors = 0;
    }
}
