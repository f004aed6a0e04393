//! Embedded Whisper: tiny.en, and optionally base (multilingual), each loaded once from a
//! CTranslate2 `model.bin` and run by one bounded pool of dedicated OS threads so inference never
//! blocks tokio workers.
//!
//! Routing ([`WhisperEngine::route`]), per request:
//!
//! | language | `Partial`, `Final` (`sttMode: fast`) | `Accurate` (`sttMode: accurate`) |
//! |---|---|---|
//! | English | tiny.en, greedy | base, [`BASE_ACCURATE`] decoding (tiny.en beam search without base) |
//! | another language base knows | base, greedy | base, [`BASE_ACCURATE`] decoding |
//! | anything else | refused ([`SttError::Unsupported`]) | refused |
//!
//! So English partials and `fast` finals cost what they did; `accurate` buys the stronger model;
//! the 98 other languages of Whisper base are heard when `models/whisper-base` is installed.
//!
//! ```text
//! ct2        CTranslate2 model.bin reader (header, variables, aliases)
//! mel        log-mel front end (realfft, Slaney filters) — also Smart-Turn's features
//! tokenizer  GPT-2 byte-level decode of tokenizer.json, special-token ids
//! model      encoder + cached decoder step on candle ops
//! decode     WhisperModel: the synchronous core (greedy / beam search, guards)
//! mod        WhisperEngine: job queue + worker threads implementing SttEngine
//! ```
//!
//! Jobs wait in a bounded queue ([`WhisperEngine::DEFAULT_QUEUE`] per worker by default); when it
//! is full `transcribe` fails at once with [`SttError::Busy`] rather than queueing more latency
//! behind a live call. Results come back through a oneshot. Dropping the engine closes the queue;
//! the workers finish the jobs already queued and exit.

pub mod ct2;
pub mod decode;
pub mod f16mm;
pub mod mel;
pub mod model;
pub mod tokenizer;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub use decode::{whisper_language, StageTimings, WhisperModel, ENGINE_NAME};
pub use mel::LogMel;

use super::{Result, SttEngine, SttError, SttQuality, SttRequest, Transcription};

/// How base decodes an `Accurate` pass: greedy (`Final`). Measured (tests/stt_engine.rs
/// `base_greedy_against_beam`, benches/README.md "Speech-to-text"): on the English fixtures base
/// greedy is never less accurate than base beam search (equal on the four clean/μ-law ones,
/// 16.7 % against 25 % on caller-question at 10 dB SNR), and on the 4 s utterance it costs about
/// +160 ms over tiny.en's `fast` pass where beam search costs about +370 ms.
pub const BASE_ACCURATE: SttQuality = SttQuality::Final;

/// One queued transcription and where its answer goes.
struct Job {
    model: Arc<WhisperModel>,
    req: SttRequest,
    reply: oneshot::Sender<Result<Transcription>>,
}

/// Whisper as an [`SttEngine`]: shared models, `workers` inference threads, a bounded queue.
#[derive(Debug)]
pub struct WhisperEngine {
    /// The English model of partials and `fast` finals (tiny.en), shared with the workers (and
    /// usable directly for benches).
    model: Arc<WhisperModel>,
    /// The multilingual model (base): `accurate` finals and every other language. `None` when
    /// its weights are not installed.
    multilingual: Option<Arc<WhisperModel>>,
    /// [`SttEngine::name`]: `whisper-tiny.en`, or `whisper-tiny.en+base` with the second model.
    name: &'static str,
    /// Producer side of the job queue; workers hold the receiver.
    jobs: SyncSender<Job>,
    /// Worker count, for diagnostics.
    workers: usize,
}

impl WhisperEngine {
    /// Queued jobs allowed per worker before `transcribe` answers `Busy`.
    pub const DEFAULT_QUEUE: usize = 4;

    /// Loads the model in `dir` and starts `workers` (≥ 1) inference threads with a queue of
    /// [`Self::DEFAULT_QUEUE`] jobs per worker.
    pub fn load(dir: &Path, workers: usize) -> Result<Self> {
        Self::load_with_queue(dir, workers, workers.max(1) * Self::DEFAULT_QUEUE)
    }

    /// [`WhisperEngine::load`] with an explicit queue capacity (jobs waiting, not running).
    pub fn load_with_queue(dir: &Path, workers: usize, queue: usize) -> Result<Self> {
        let model = Arc::new(WhisperModel::load(dir)?);
        Self::start(model, workers, queue)
    }

    /// Loads tiny.en from `dir` and, when `multilingual_dir` holds a `model.bin`, base from
    /// there; starts `workers` threads shared by both. A base that fails to load is logged and
    /// left out: it costs `accurate` and the other languages, not English.
    pub fn load_with_multilingual(dir: &Path, multilingual_dir: &Path, workers: usize) -> Result<Self> {
        let model = Arc::new(WhisperModel::load(dir)?);
        let multi = if multilingual_dir.join("model.bin").is_file() {
            match WhisperModel::load(multilingual_dir) {
                Ok(m) if !m.english_only() => Some(Arc::new(m)),
                Ok(m) => {
                    tracing::warn!(dir = %multilingual_dir.display(), model = m.name(), "not multilingual; ignored");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "multilingual Whisper not loaded");
                    None
                }
            }
        } else {
            None
        };
        Self::start_with(model, multi, workers, workers.max(1) * Self::DEFAULT_QUEUE)
    }

    /// Starts the worker pool over an already loaded model.
    pub fn start(model: Arc<WhisperModel>, workers: usize, queue: usize) -> Result<Self> {
        Self::start_with(model, None, workers, queue)
    }

    /// Starts the worker pool over an English model and an optional multilingual one.
    pub fn start_with(
        model: Arc<WhisperModel>,
        multilingual: Option<Arc<WhisperModel>>,
        workers: usize,
        queue: usize,
    ) -> Result<Self> {
        if let Some(m) = multilingual.as_ref().filter(|m| m.english_only()) {
            return Err(SttError::Engine(format!("{} is not a multilingual model", m.name())));
        }
        let name = match (model.name(), &multilingual) {
            (ENGINE_NAME, Some(m)) if m.name() == "whisper-base" => "whisper-tiny.en+base",
            (_, Some(_)) => "whisper+multilingual",
            (n, None) => n,
        };
        let workers = workers.max(1);
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("stt-whisper-{i}"))
                .spawn(move || worker(&rx))
                .map_err(|e| SttError::Engine(format!("cannot start inference thread: {e}")))?;
        }
        Ok(Self { model, multilingual, name, jobs, workers })
    }

    /// The shared English model (synchronous core).
    pub fn model(&self) -> &Arc<WhisperModel> {
        &self.model
    }

    /// The multilingual model, when installed.
    pub fn multilingual(&self) -> Option<&Arc<WhisperModel>> {
        self.multilingual.as_ref()
    }

    /// Which model transcribes `language` at `quality`, and how it decodes (see the module doc);
    /// `None` when no model knows the language.
    pub fn route(&self, language: &str, quality: SttQuality) -> Option<(&Arc<WhisperModel>, SttQuality)> {
        let multi = self.multilingual.as_ref().filter(|m| m.covers(language));
        match (self.model.covers(language), multi, quality) {
            (true, Some(m), SttQuality::Accurate) => Some((m, BASE_ACCURATE)),
            (true, _, q) => Some((&self.model, q)),
            (false, Some(m), SttQuality::Accurate) => Some((m, BASE_ACCURATE)),
            (false, Some(m), q) => Some((m, q)),
            (false, None, _) => None,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // Hold the lock only while waiting for the next job, not while running it.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue; // the caller gave up (e.g. a superseded partial)
        }
        let result = job.model.transcribe_in(&job.req.pcm_16k, &job.req.language, job.req.quality);
        let _ = job.reply.send(result);
    }
}

impl SttEngine for WhisperEngine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn covers(&self, language: &str) -> bool {
        self.route(language, SttQuality::Final).is_some()
    }

    fn engine_for(&self, language: &str) -> Option<&'static str> {
        self.route(language, SttQuality::Final).map(|(m, _)| m.name())
    }

    fn partials(&self) -> bool {
        true
    }

    fn transcribe(
        &self,
        req: SttRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>> {
        Box::pin(async move {
            let Some((model, quality)) = self.route(&req.language, req.quality) else {
                return Err(SttError::Unsupported { language: req.language });
            };
            let model = Arc::clone(model);
            let (reply, answer) = oneshot::channel();
            match self.jobs.try_send(Job { model, req: SttRequest { quality, ..req }, reply }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(SttError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(SttError::Gone),
            }
            answer.await.map_err(|_| SttError::Gone)?
        })
    }
}
