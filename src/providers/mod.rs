//! Model providers behind traits: speech-to-text, text-to-speech (and, later, the LLM) — the
//! embedded offline engines that work out of the box, and OpenAI-compatible remote engines.
//! Coarse boundaries: calls hold `Arc<dyn …>` engines shared by every call.

pub mod llm;
pub mod onnx;
pub mod stt;
pub mod tts;
pub mod turn_detect;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use crate::audio::vad::SileroModel;
use crate::config::{LlmChoice, ProvidersConfig, SttChoice, TtsChoice, VadChoice};
use crate::voices::{Voice, VoiceCatalogue};

/// The engines every call shares, loaded once at start-up.
pub struct Engines {
    /// Speaks every catalogue voice: Piper's voices by Piper when it loaded, the rest (and
    /// Piper's, when it did not) by espeak-ng.
    pub tts: tts::SharedTts,
    /// The Piper engine, when its weights and onnxruntime loaded.
    pub piper: Option<Arc<tts::piper::PiperTts>>,
    /// The voices agents may pick.
    pub voices: VoiceCatalogue,
    /// Speech-to-text; `None` when the configured engine could not be set up (agent calls are
    /// then refused with the reason in [`Engines::stt_missing`]).
    pub stt: Option<stt::SharedStt>,
    /// Why there is no speech-to-text engine.
    pub stt_missing: Option<String>,
    /// Silero's shared sessions; `None` = webrtc-vad.
    pub silero: Option<Arc<SileroModel>>,
    /// The semantic end-of-turn model (`--smart-turn`), when enabled and present.
    pub smart_turn: Option<Arc<turn_detect::SmartTurn>>,
    /// The language model of hosted agents; `None` when it could not be set up (hosted agents
    /// then answer with the fallback line, the reason in [`Engines::llm_missing`]).
    pub llm: Option<llm::SharedLlm>,
    /// Why there is no language model.
    pub llm_missing: Option<String>,
    /// Remote model name per `modelTier`.
    pub model_tiers: llm::ModelTiers,
    /// When a reply has not started speaking after this long, the agent says a holding phrase.
    pub filler_after: std::time::Duration,
    /// Hosted agents ask the model on tentative transcripts.
    pub preemptive_replies: bool,
}

/// Sends each request to the engine of its voice: `openai:…` voices to the remote engine,
/// Piper's voice to Piper, every other to espeak-ng (`Engines::engine_voice` only names a voice
/// whose engine is loaded).
struct TtsRouter {
    piper: Option<Arc<tts::piper::PiperTts>>,
    openai: Option<tts::openai::OpenAiTts>,
    espeak: tts::espeak::EspeakTts,
}

impl TtsRouter {
    fn engine(&self, engine_voice: &str) -> &dyn tts::TtsEngine {
        match (&self.piper, &self.openai) {
            (_, Some(o)) if engine_voice.starts_with(tts::openai::VOICE_PREFIX) => o,
            (Some(p), _) if engine_voice == p.voice() => p.as_ref(),
            _ => &self.espeak,
        }
    }
}

impl tts::TtsEngine for TtsRouter {
    /// The engines loaded: `piper+espeak-ng`, `espeak-ng`, `openai-tts+piper+espeak-ng`, …
    fn name(&self) -> &'static str {
        match (self.openai.is_some(), self.piper.is_some()) {
            (false, true) => "piper+espeak-ng",
            (false, false) => "espeak-ng",
            (true, true) => "openai-tts+piper+espeak-ng",
            (true, false) => "openai-tts+espeak-ng",
        }
    }

    fn synthesize(
        &self,
        req: tts::TtsRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<i16>, tts::TtsError>> + Send + '_>> {
        self.engine(&req.engine_voice).synthesize(req)
    }

    fn stream(&self, req: tts::TtsRequest) -> tts::TtsStream<'_> {
        self.engine(&req.engine_voice).stream(req)
    }
}

/// Models loaded once per process and directory (a process normally runs one server; the test
/// suite runs many, which then share the weights instead of loading them again).
fn cached<T: Clone>(
    cache: &'static OnceLock<Mutex<HashMap<PathBuf, T>>>,
    dir: &Path,
    load: impl FnOnce() -> T,
) -> T {
    let mut map = cache.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    map.entry(dir.to_path_buf()).or_insert_with(load).clone()
}

impl Engines {
    /// The engines `cfg` asks for, with the weights in `models_dir`. Blocking (loads weights).
    pub fn load(models_dir: &Path, cfg: &ProvidersConfig) -> Self {
        static WHISPER: OnceLock<Mutex<HashMap<PathBuf, Result<stt::SharedStt, String>>>> = OnceLock::new();
        static SILERO: OnceLock<Mutex<HashMap<PathBuf, Option<Arc<SileroModel>>>>> = OnceLock::new();
        static PIPER: OnceLock<Mutex<HashMap<PathBuf, Option<Arc<tts::piper::PiperTts>>>>> = OnceLock::new();
        let embedded_whisper = || {
            cached(&WHISPER, models_dir, || {
                let dir = models_dir.join("whisper-tiny.en");
                let base = models_dir.join("whisper-base");
                stt::WhisperEngine::load_with_multilingual(&dir, &base, cfg.stt_workers)
                    .map(|e| {
                        tracing::info!(
                            dir = %dir.display(),
                            workers = cfg.stt_workers,
                            multilingual = e.multilingual().is_some(),
                            "embedded STT engine: {}",
                            stt::SttEngine::name(&e)
                        );
                        Arc::new(e) as stt::SharedStt
                    })
                    .map_err(|e| {
                        format!(
                            "the embedded speech-to-text engine is not available ({e}); run `make models`"
                        )
                    })
            })
        };
        let stt: Result<stt::SharedStt, String> = match cfg.stt {
            SttChoice::Embedded => embedded_whisper(),
            SttChoice::Openai => match &cfg.openai_api_key {
                Some(key) => {
                    let remote: stt::SharedStt = Arc::new(stt::OpenAiStt::new(
                        cfg.openai_base_url.clone(),
                        key.clone(),
                        cfg.stt_model.clone(),
                    ));
                    match cfg.stt_partials.then(embedded_whisper) {
                        Some(Ok(local)) => {
                            tracing::info!("remote STT engine; partials from the embedded Whisper");
                            Ok(Arc::new(stt::SplitStt::new(remote, local)) as stt::SharedStt)
                        }
                        Some(Err(e)) => {
                            tracing::warn!(reason = %e, "remote STT engine without partials: turns wait for the VAD");
                            Ok(remote)
                        }
                        None => Ok(remote),
                    }
                }
                None => Err("remote speech-to-text needs OPENAI_API_KEY".to_string()),
            },
        };
        if let Err(e) = &stt {
            tracing::warn!(reason = %e, "no speech-to-text engine: agent calls will be refused");
        }
        let silero = match cfg.vad {
            VadChoice::Webrtc => None,
            VadChoice::Auto | VadChoice::Silero => {
                cached(&SILERO, models_dir, || crate::audio::vad::default_engine(models_dir))
            }
        };
        static SMART_TURN: OnceLock<Mutex<HashMap<PathBuf, Option<Arc<turn_detect::SmartTurn>>>>> =
            OnceLock::new();
        let smart_turn = if cfg.smart_turn {
            cached(&SMART_TURN, models_dir, || match turn_detect::SmartTurn::load(models_dir) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!(error = %e, "end-of-turn model unavailable; endpointing by silence and words");
                    None
                }
            })
        } else {
            None
        };
        let (stt, stt_missing) = match stt {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let openai_tts = match (cfg.tts, &cfg.openai_api_key) {
            (TtsChoice::Openai, Some(key)) => {
                tracing::info!(model = %cfg.tts_model, "TTS engine: OpenAI-compatible /audio/speech");
                Some(tts::openai::OpenAiTts::new(
                    cfg.openai_base_url.clone(),
                    key.clone(),
                    cfg.tts_model.clone(),
                ))
            }
            (TtsChoice::Openai, None) => {
                tracing::warn!("--tts openai needs OPENAI_API_KEY: only the embedded voices are offered");
                None
            }
            (TtsChoice::Embedded, _) => None,
        };
        let voices = VoiceCatalogue::for_engines(models_dir, openai_tts.is_some());
        let piper = if voices.all().iter().any(|v| v.provider == "piper") {
            cached(&PIPER, models_dir, || match tts::piper::PiperTts::load(models_dir) {
                Ok(p) => {
                    tracing::info!(voice = p.voice(), "TTS engine: Piper");
                    Some(Arc::new(p))
                }
                Err(e) => {
                    tracing::warn!(reason = %e, "Piper voices will be spoken by espeak-ng");
                    None
                }
            })
        } else {
            None
        };
        let espeak = tts::espeak::EspeakTts::new();
        let tts: tts::SharedTts = Arc::new(TtsRouter { piper: piper.clone(), openai: openai_tts, espeak });
        static LLAMA: OnceLock<Mutex<HashMap<PathBuf, Result<llm::SharedLlm, String>>>> = OnceLock::new();
        let llm: Result<llm::SharedLlm, String> = match cfg.llm {
            LlmChoice::Embedded => {
                // One model per directory and context count (the tests run servers with both).
                let key = models_dir.join(format!("llm#{}", cfg.llm_contexts));
                cached(&LLAMA, &key, || {
                    let path = llm::llama::default_model_path(models_dir);
                    llm::LlamaLlm::load_with(&path, llm::LlamaOptions::with_contexts(cfg.llm_contexts))
                        .map(|e| {
                            tracing::info!(path = %path.display(), contexts = cfg.llm_contexts, "LLM engine: SmolLM2-135M-Instruct");
                            Arc::new(e) as llm::SharedLlm
                        })
                        .map_err(|e| format!("the embedded language model is not available ({e}); run `make models`"))
                })
            }
            LlmChoice::Openai => match &cfg.openai_api_key {
                Some(key) => Ok(Arc::new(llm::OpenAiLlm::new(cfg.openai_base_url.clone(), key.clone()))),
                None => Err("the remote language model needs OPENAI_API_KEY".to_string()),
            },
        };
        if let Err(e) = &llm {
            tracing::warn!(reason = %e, "no language model: hosted agents will answer with the fallback line");
        }
        let (llm, llm_missing) = match llm {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            tts,
            piper,
            voices,
            stt,
            stt_missing,
            silero,
            smart_turn,
            llm,
            llm_missing,
            model_tiers: cfg.model_tiers.clone(),
            filler_after: cfg.filler_after,
            preemptive_replies: cfg.preemptive_replies,
        }
    }

    /// Whether an agent speaking `language` can be heard; the reason when not.
    pub fn check_language(&self, language: &str) -> Result<(), String> {
        match &self.stt {
            None => Err(self.stt_missing.clone().unwrap_or_else(|| "no speech-to-text engine".into())),
            Some(stt) if !stt.covers(language) => Err(format!(
                "no installed speech-to-text engine understands {language} ({} does not cover it{})",
                stt.name(),
                if stt.name() == stt::whisper::ENGINE_NAME {
                    "; run `make models` for Whisper base"
                } else {
                    ""
                }
            )),
            Some(_) => Ok(()),
        }
    }

    /// The engine voice that speaks `voice_id` (`en-us` when unknown). Piper's voices are
    /// spoken by espeak-ng's voice for the same language when Piper did not load.
    pub fn engine_voice(&self, voice_id: &str) -> String {
        let voice: Option<&Voice> = self.voices.get(voice_id);
        match voice {
            Some(v) if v.provider == "espeak-ng" || v.provider == "openai" => v.engine_voice.to_string(),
            Some(v)
                if v.provider == "piper"
                    && self.piper.as_ref().is_some_and(|p| p.voice() == v.engine_voice) =>
            {
                v.engine_voice.to_string()
            }
            Some(v) => self
                .voices
                .all()
                .iter()
                .find(|e| e.provider == "espeak-ng" && e.language == v.language)
                .map_or_else(|| "en-us".to_string(), |e| e.engine_voice.to_string()),
            None => "en-us".to_string(),
        }
    }
}
