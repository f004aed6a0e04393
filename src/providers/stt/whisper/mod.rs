//! Embedded Whisper tiny.en: the model loaded once from a CTranslate2 `model.bin`, run by a
//! bounded pool of dedicated OS threads so inference never blocks tokio workers.
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

pub use decode::{StageTimings, WhisperModel, ENGINE_NAME};
pub use mel::LogMel;

use super::{primary_language, Result, SttEngine, SttError, SttRequest, Transcription};

/// One queued transcription and where its answer goes.
struct Job {
    req: SttRequest,
    reply: oneshot::Sender<Result<Transcription>>,
}

/// Whisper as an [`SttEngine`]: a shared model, `workers` inference threads, a bounded queue.
#[derive(Debug)]
pub struct WhisperEngine {
    /// The loaded model, shared with the workers (and usable directly for benches).
    model: Arc<WhisperModel>,
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

    /// Starts the worker pool over an already loaded model.
    pub fn start(model: Arc<WhisperModel>, workers: usize, queue: usize) -> Result<Self> {
        let workers = workers.max(1);
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            let model = Arc::clone(&model);
            std::thread::Builder::new()
                .name(format!("stt-whisper-{i}"))
                .spawn(move || worker(&model, &rx))
                .map_err(|e| SttError::Engine(format!("cannot start inference thread: {e}")))?;
        }
        Ok(Self { model, jobs, workers })
    }

    /// The shared model (synchronous core).
    pub fn model(&self) -> &Arc<WhisperModel> {
        &self.model
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
}

fn worker(model: &WhisperModel, rx: &Mutex<mpsc::Receiver<Job>>) {
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
        let result = model.transcribe(&job.req.pcm_16k, job.req.quality);
        let _ = job.reply.send(result);
    }
}

impl SttEngine for WhisperEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn covers(&self, language: &str) -> bool {
        primary_language(language) == "en" || !self.model.english_only() && !language.is_empty()
    }

    fn partials(&self) -> bool {
        true
    }

    fn transcribe(
        &self,
        req: SttRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>> {
        Box::pin(async move {
            if !self.covers(&req.language) {
                return Err(SttError::Unsupported { language: req.language });
            }
            let (reply, answer) = oneshot::channel();
            match self.jobs.try_send(Job { req, reply }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(SttError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(SttError::Gone),
            }
            answer.await.map_err(|_| SttError::Gone)?
        })
    }
}
