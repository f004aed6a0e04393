//! The embedded LLM: a GGUF chat model (SmolLM2-135M-Instruct by default) on llama.cpp through
//! `llama-cpp-2`.
//!
//! The model is loaded once; a fixed pool of contexts ([`LlamaOptions::contexts`], default 2)
//! runs on dedicated threads, one reply at a time each. Requests wait in one bounded queue
//! ([`LlamaOptions::queue_capacity`]; over it `chat` answers [`LlmError::Busy`]) whose depth
//! [`LlamaLlm::queue_depth`] reports.
//!
//! **Prefix reuse.** A context remembers the tokens its KV cache holds. A request only prefills
//! the tokens after the longest common prefix with them — for the next turn of the same call
//! that is just the new user message (and whatever the history changed). The context also keeps
//! the text its tokens spell, so an unchanged previous reply keeps the model's own tokens even
//! where re-tokenising the text would split it differently. Requests carrying a
//! `session` go preferably to the idle context that served the session last; with more live
//! sessions than contexts, reuse is lost when another session took the context in between.
//! [`LlamaLlm::stats`] counts prefilled and reused tokens.
//!
//! **Tools** are ignored: SmolLM2-135M does not produce tool calls reliably. Tool results in the
//! history are rendered as user messages (`Tool result: …`), so the conversation can run
//! detected intents itself and feed their results back.
//!
//! Cancellation: the worker checks between prefill chunks and after every token whether the
//! receiver is gone, and then stops (the context is then free for the next request).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::{
    failed, ChatEvent, ChatMessage, ChatRequest, LlmEngine, LlmError, Result, Role, Utf8Stream,
    EVENT_CHANNEL_CAPACITY,
};

/// Name reported by [`LlmEngine::name`].
pub const ENGINE_NAME: &str = "llama.cpp";

/// Tokens per prefill batch: also the cancellation granularity of a long prefill.
pub const PREFILL_BATCH_TOKENS: u32 = 256;

/// The one KV-cache sequence each context uses.
const SEQ: i32 = 0;

/// Embedded engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaOptions {
    /// Contexts (concurrent replies). Each holds its own KV cache (~25 MB per 1k tokens for
    /// SmolLM2-135M) plus compute buffers.
    pub contexts: usize,
    /// CPU threads per context; default: the machine's cores divided among the contexts.
    pub threads_per_context: usize,
    /// Context length in tokens (prompt + reply).
    pub context_tokens: u32,
    /// Requests that may wait for a context; more get [`LlmError::Busy`].
    pub queue_capacity: usize,
    /// Sampler seed (fixed: the same prompt at the same temperature gives the same reply).
    pub seed: u32,
}

impl LlamaOptions {
    /// Defaults for `contexts` contexts.
    pub fn with_contexts(contexts: usize) -> Self {
        let contexts = contexts.max(1);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            contexts,
            threads_per_context: (cores / contexts).max(1),
            context_tokens: 2048,
            queue_capacity: 32,
            seed: 0x5EED,
        }
    }
}

impl Default for LlamaOptions {
    fn default() -> Self {
        Self::with_contexts(2)
    }
}

/// Counters since load (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlamaStats {
    /// Requests that started generating.
    pub requests: u64,
    /// Prompt tokens computed (prefilled).
    pub prefilled_tokens: u64,
    /// Prompt tokens served from a context's KV cache instead.
    pub reused_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// The embedded engine: a handle on the shared queue the context threads serve.
pub struct LlamaLlm {
    /// Queue, per-context state and counters, shared with the context threads.
    shared: Arc<Shared>,
    /// Context length, for callers sizing prompts.
    context_tokens: u32,
}

/// A request waiting for (or being served by) a context.
struct Job {
    req: ChatRequest,
    tx: mpsc::Sender<Result<ChatEvent>>,
    queued_at: Instant,
}

/// Scheduling state under one lock.
struct Queue {
    jobs: VecDeque<Job>,
    /// Per context: the session whose tokens its KV cache holds.
    held: Vec<Option<String>>,
    /// Per context: waiting for a job.
    idle: Vec<bool>,
    /// The engine was dropped: contexts exit once the queue is empty.
    closed: bool,
}

impl Queue {
    /// The job context `me` should take: the oldest one of its own session, else the oldest
    /// one whose session no other idle context holds (that context will take it).
    fn pick(&mut self, me: usize) -> Option<Job> {
        if let Some(own) = &self.held[me] {
            if let Some(i) = self.jobs.iter().position(|j| j.req.session.as_ref() == Some(own)) {
                return self.jobs.remove(i);
            }
        }
        let i = self.jobs.iter().position(|j| match &j.req.session {
            None => true,
            Some(s) => {
                !(0..self.held.len()).any(|o| o != me && self.idle[o] && self.held[o].as_ref() == Some(s))
            }
        })?;
        self.jobs.remove(i)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job arrives or the engine closes.
    wake: Condvar,
    queue_capacity: usize,
    requests: AtomicU64,
    prefilled: AtomicU64,
    reused: AtomicU64,
    completion: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// llama.cpp's process-wide backend (it may be initialised only once).
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlmError::Engine(e.clone()))
}

/// Creating contexts of one model in parallel is unsound in llama.cpp (it mutates the model).
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

impl LlamaLlm {
    /// Loads the GGUF at `path` with `contexts` contexts and default options. Blocking.
    pub fn load(path: impl AsRef<Path>, contexts: usize) -> Result<Self> {
        Self::load_with(path, LlamaOptions::with_contexts(contexts))
    }

    /// Loads the GGUF at `path`. Blocking (~0.2 s for SmolLM2-135M, plus the contexts).
    pub fn load_with(path: impl AsRef<Path>, opts: LlamaOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let load_err = |reason: String| LlmError::Load { path: path.clone(), reason };
        if !path.is_file() {
            return Err(load_err("no such file".into()));
        }
        let backend = backend()?;
        let started = Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| load_err(e.to_string()))?;
        let template = model
            .chat_template(None)
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| load_err(format!("chat template: {e}")))?;
        let model = Arc::new(model);
        let contexts = opts.contexts.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                held: vec![None; contexts],
                idle: vec![true; contexts],
                closed: false,
            }),
            wake: Condvar::new(),
            queue_capacity: opts.queue_capacity,
            requests: AtomicU64::new(0),
            prefilled: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            completion: AtomicU64::new(0),
        });
        let engine = Self { shared: shared.clone(), context_tokens: opts.context_tokens };
        for me in 0..contexts {
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let worker = Worker {
                shared: shared.clone(),
                model: model.clone(),
                template: template.clone(),
                opts: opts.clone(),
                me,
            };
            std::thread::Builder::new()
                .name(format!("llm-ctx-{me}"))
                .spawn(move || worker.run(ready_tx))
                .map_err(|e| load_err(format!("cannot start a context thread: {e}")))?;
            // On failure `engine` drops here, which stops the contexts already started.
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(load_err(format!("context: {e}"))),
                Err(_) => return Err(load_err("context thread died".into())),
            }
        }
        tracing::info!(
            path = %path.display(),
            contexts,
            threads = opts.threads_per_context,
            context_tokens = opts.context_tokens,
            load_ms = started.elapsed().as_millis() as u64,
            "LLM engine: llama.cpp"
        );
        Ok(engine)
    }

    /// Requests waiting for a context (not counting those being served).
    pub fn queue_depth(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Counters since load.
    pub fn stats(&self) -> LlamaStats {
        let s = &self.shared;
        LlamaStats {
            requests: s.requests.load(Ordering::Relaxed),
            prefilled_tokens: s.prefilled.load(Ordering::Relaxed),
            reused_tokens: s.reused.load(Ordering::Relaxed),
            completion_tokens: s.completion.load(Ordering::Relaxed),
        }
    }

    /// Context length in tokens (prompt + reply).
    pub fn context_tokens(&self) -> u32 {
        self.context_tokens
    }
}

impl Drop for LlamaLlm {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

impl LlmEngine for LlamaLlm {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn chat(&self, req: ChatRequest) -> mpsc::Receiver<Result<ChatEvent>> {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        {
            let mut q = self.shared.lock();
            if q.closed {
                return failed(LlmError::Gone);
            }
            if q.jobs.len() >= self.shared.queue_capacity {
                return failed(LlmError::Busy);
            }
            q.jobs.push_back(Job { req, tx, queued_at: Instant::now() });
        }
        self.shared.wake.notify_all();
        rx
    }
}

/// One context thread.
struct Worker {
    shared: Arc<Shared>,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    opts: LlamaOptions,
    me: usize,
}

/// A context and what its KV cache holds.
struct Slot<'m> {
    model: &'m LlamaModel,
    template: &'m LlamaChatTemplate,
    ctx: LlamaContext<'m>,
    /// Tokens at positions 0.. of the KV cache.
    cached: Vec<LlamaToken>,
    /// The text those tokens spell (templated prompt + generated pieces), when known: a next
    /// prompt that starts with it keeps the generated tokens even where re-tokenising the reply
    /// text would split it differently.
    cached_text: Vec<u8>,
    batch: LlamaBatch<'static>,
    n_ctx: usize,
    seed: u32,
}

/// How a generation ended early.
enum Stop {
    /// The receiver was dropped.
    Cancelled,
    Failed(LlmError),
}

impl From<LlmError> for Stop {
    fn from(e: LlmError) -> Self {
        Stop::Failed(e)
    }
}

impl Worker {
    fn run(self, ready: std::sync::mpsc::SyncSender<std::result::Result<(), String>>) {
        let threads = i32::try_from(self.opts.threads_per_context.max(1)).unwrap_or(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.opts.context_tokens))
            .with_n_batch(PREFILL_BATCH_TOKENS)
            .with_n_ubatch(PREFILL_BATCH_TOKENS)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = {
            let _one_at_a_time = CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
            match backend() {
                Ok(b) => self.model.new_context(b, params).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let ctx = match ctx {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let n_ctx = ctx.n_ctx() as usize;
        let mut slot = Slot {
            model: &self.model,
            template: &self.template,
            ctx,
            cached: Vec::new(),
            cached_text: Vec::new(),
            batch: LlamaBatch::new(PREFILL_BATCH_TOKENS as usize, 1),
            n_ctx,
            seed: self.opts.seed,
        };
        let _ = ready.send(Ok(()));
        drop(ready);
        while let Some(job) = self.next_job() {
            let waited_ms = job.queued_at.elapsed().as_millis() as u64;
            match slot.serve(&job.req, &job.tx, &self.shared) {
                Ok(()) | Err(Stop::Cancelled) => {}
                Err(Stop::Failed(e)) => {
                    tracing::warn!(context = self.me, error = %e, "LLM request failed");
                    let _ = job.tx.blocking_send(Err(e));
                }
            }
            tracing::debug!(context = self.me, waited_ms, "LLM request served");
        }
    }

    /// Blocks until there is a job for this context; `None` once the engine is dropped.
    fn next_job(&self) -> Option<Job> {
        let mut q = self.shared.lock();
        q.idle[self.me] = true;
        loop {
            if let Some(job) = q.pick(self.me) {
                q.idle[self.me] = false;
                q.held[self.me] = job.req.session.clone();
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Slot<'_> {
    /// Generates the reply to `req` into `tx`.
    fn serve(
        &mut self,
        req: &ChatRequest,
        tx: &mpsc::Sender<Result<ChatEvent>>,
        shared: &Shared,
    ) -> std::result::Result<(), Stop> {
        if tx.is_closed() {
            return Err(Stop::Cancelled);
        }
        let started = Instant::now();
        let reserve = (req.max_tokens.max(1) as usize).min(self.n_ctx / 4);
        let budget = self.n_ctx - reserve;
        let (prompt, mut tokens) = self.prompt_tokens(&req.messages, budget)?;
        if !self.cached_text.is_empty() {
            if let Some(rest) = prompt.as_bytes().strip_prefix(self.cached_text.as_slice()) {
                let mut spliced = self.cached.clone();
                spliced.extend(self.model.vocab().tokenize(rest, false, true));
                if spliced.len() <= budget {
                    tokens = spliced;
                }
            }
        }

        // Keep the cached prefix; at least one token must be decoded to get logits.
        let mut keep = common_prefix(&self.cached, &tokens).min(tokens.len() - 1);
        if keep < self.cached.len() {
            let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            if self.ctx.kv_cache_seq_rm(SEQ, Some(to_u32(keep)), None).is_err() {
                self.ctx.clear_kv_cache();
                keep = 0;
            }
            self.cached.truncate(keep);
        }
        // Known again once the prefill is complete.
        self.cached_text.clear();
        shared.requests.fetch_add(1, Ordering::Relaxed);
        shared.reused.fetch_add(keep as u64, Ordering::Relaxed);
        shared.prefilled.fetch_add((tokens.len() - keep) as u64, Ordering::Relaxed);

        for chunk in tokens[keep..].chunks(PREFILL_BATCH_TOKENS as usize) {
            if tx.is_closed() {
                return Err(Stop::Cancelled);
            }
            self.batch.clear();
            let last = self.cached.len() + chunk.len() - 1;
            for (i, &t) in chunk.iter().enumerate() {
                let pos = self.cached.len() + i;
                self.batch.add(t, pos as i32, &[SEQ], pos == last).map_err(engine_err)?;
            }
            self.decode()?;
            self.cached.extend_from_slice(chunk);
        }
        self.cached_text = prompt.into_bytes();
        let prefill_ms = started.elapsed().as_millis() as u64;

        // A repetition penalty over the last 64 tokens: small models otherwise loop on a phrase
        // ("I'm sorry. I'm sorry. …") under greedy decoding.
        let penalties = LlamaSampler::penalties(self.model.n_vocab(), 64, 1.3, 0.0, 0.0);
        let mut sampler = if req.temperature <= 0.0 {
            LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()])
        } else {
            LlamaSampler::chain_simple([
                penalties,
                LlamaSampler::temp(req.temperature),
                LlamaSampler::top_k(40),
                LlamaSampler::top_p(0.95, 1),
                LlamaSampler::dist(self.seed),
            ])
        };
        let vocab = self.model.vocab();
        let mut text = Utf8Stream::default();
        let mut generated = 0u32;
        let mut finish = "length";
        let mut logits_at = self.batch.n_tokens() - 1;
        while generated < req.max_tokens {
            let token = sampler.sample(&self.ctx, logits_at);
            if vocab.is_eog(token) {
                finish = "stop";
                break;
            }
            generated += 1;
            shared.completion.fetch_add(1, Ordering::Relaxed);
            let bytes = vocab.token_to_piece(token, false, None);
            let piece = text.push(&bytes);
            if !piece.is_empty() && tx.blocking_send(Ok(ChatEvent::Delta(piece))).is_err() {
                return Err(Stop::Cancelled);
            }
            if generated == req.max_tokens || self.cached.len() + 1 >= self.n_ctx {
                break;
            }
            self.batch.clear();
            self.batch.add(token, self.cached.len() as i32, &[SEQ], true).map_err(engine_err)?;
            self.decode()?;
            self.cached.push(token);
            self.cached_text.extend_from_slice(&bytes);
            logits_at = 0;
            if tx.is_closed() {
                return Err(Stop::Cancelled);
            }
        }
        let rest = text.finish();
        if !rest.is_empty() && tx.blocking_send(Ok(ChatEvent::Delta(rest))).is_err() {
            return Err(Stop::Cancelled);
        }
        tracing::debug!(
            prompt_tokens = tokens.len(),
            reused_tokens = keep,
            prefill_ms,
            completion_tokens = generated,
            total_ms = started.elapsed().as_millis() as u64,
            "LLM reply"
        );
        let done = ChatEvent::Done {
            finish_reason: finish.to_string(),
            prompt_tokens: tokens.len() as u32,
            completion_tokens: generated,
        };
        tx.blocking_send(Ok(done)).map_err(|_| Stop::Cancelled)
    }

    /// Decodes the batch; on failure the cache is cleared (its state is unknown).
    fn decode(&mut self) -> std::result::Result<(), Stop> {
        self.ctx.decode(&mut self.batch).map_err(|e| {
            self.ctx.clear_kv_cache();
            self.cached.clear();
            self.cached_text.clear();
            Stop::Failed(LlmError::Engine(format!("decode: {e}")))
        })
    }

    /// The chat-templated prompt and its tokens, at most `budget` of them: the oldest messages
    /// after the system prompt are dropped until it fits.
    fn prompt_tokens(&self, messages: &[ChatMessage], budget: usize) -> Result<(String, Vec<LlamaToken>)> {
        let mut msgs: Vec<LlamaChatMessage> = Vec::with_capacity(messages.len());
        for m in messages {
            let (role, content) = render(m);
            msgs.push(LlamaChatMessage::new(role.into(), content).map_err(engine_err)?);
        }
        if msgs.is_empty() {
            return Err(LlmError::Engine("empty conversation".into()));
        }
        let first_droppable = usize::from(messages[0].role == Role::System);
        loop {
            let prompt = self.model.apply_chat_template(self.template, &msgs, true).map_err(engine_err)?;
            let tokens = self.model.vocab().tokenize(prompt.as_bytes(), false, true);
            if tokens.len() <= budget && !tokens.is_empty() {
                return Ok((prompt, tokens));
            }
            if msgs.len() <= first_droppable + 1 || tokens.is_empty() {
                return Err(LlmError::ContextFull {
                    prompt_tokens: tokens.len(),
                    context_tokens: self.n_ctx,
                });
            }
            msgs.remove(first_droppable);
        }
    }
}

/// Role and text a message is templated with (SmolLM2 knows no tool role or tool calls).
fn render(m: &ChatMessage) -> (&'static str, String) {
    let clean = |s: &str| s.replace('\0', "");
    match m.role {
        Role::Tool => ("user", format!("Tool result: {}", clean(&m.content))),
        Role::Assistant if m.content.is_empty() && !m.tool_calls.is_empty() => {
            let calls: Vec<String> =
                m.tool_calls.iter().map(|c| format!("{}({})", c.name, c.arguments)).collect();
            ("assistant", format!("(calling {})", calls.join(", ")))
        }
        role => (role.as_str(), clean(&m.content)),
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn engine_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Engine(e.to_string())
}

/// The conventional location of the default weights under a models directory.
pub fn default_model_path(models_dir: &Path) -> PathBuf {
    models_dir.join("llm").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(session: Option<&str>) -> Job {
        let (tx, _rx) = mpsc::channel(1);
        Job {
            req: ChatRequest {
                messages: vec![],
                tools: vec![],
                model: String::new(),
                max_tokens: 1,
                temperature: 0.0,
                session: session.map(str::to_string),
            },
            tx,
            queued_at: Instant::now(),
        }
    }

    fn queue(held: [Option<&str>; 2], idle: [bool; 2], jobs: &[Option<&str>]) -> Queue {
        Queue {
            jobs: jobs.iter().map(|s| job(*s)).collect(),
            held: held.iter().map(|s| s.map(str::to_string)).collect(),
            idle: idle.to_vec(),
            closed: false,
        }
    }

    fn session(j: Option<Job>) -> Option<String> {
        j.and_then(|j| j.req.session)
    }

    #[test]
    fn pick_prefers_own_session_then_oldest() {
        let mut q = queue([Some("a"), None], [true, true], &[Some("x"), Some("a")]);
        assert_eq!(session(q.pick(0)), Some("a".into()));
        assert_eq!(session(q.pick(0)), Some("x".into()));
        assert!(q.pick(0).is_none());
    }

    #[test]
    fn pick_leaves_a_session_to_the_idle_context_holding_it() {
        let mut q = queue([Some("a"), Some("b")], [true, true], &[Some("b")]);
        assert!(q.pick(0).is_none());
        assert_eq!(session(q.pick(1)), Some("b".into()));
        // …unless that context is busy.
        let mut q = queue([Some("a"), Some("b")], [true, false], &[Some("b"), None]);
        assert_eq!(session(q.pick(0)), Some("b".into()));
        assert_eq!(session(q.pick(0)), None);
    }

    #[test]
    fn render_maps_tool_messages() {
        let (role, text) = render(&ChatMessage::tool("call_1", "42 °C"));
        assert_eq!((role, text.as_str()), ("user", "Tool result: 42 °C"));
        let (role, text) = render(&ChatMessage::system("be\0 brief"));
        assert_eq!((role, text.as_str()), ("system", "be brief"));
    }
}
