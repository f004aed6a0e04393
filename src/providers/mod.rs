//! Model providers behind traits: speech-to-text, text-to-speech (and, later, the LLM) — the
//! embedded offline engines that work out of the box, and OpenAI-compatible remote engines.
//! Coarse boundaries: calls hold `Arc<dyn …>` engines shared by every call.

pub mod llm;
pub mod onnx;
pub mod stt;
pub mod tts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::audio::vad::SileroModel;
use crate::config::{ProvidersConfig, SttChoice, VadChoice};
use crate::voices::{Voice, VoiceCatalogue};

/// The engines every call shares, loaded once at start-up.
pub struct Engines {
    /// Speaks every catalogue voice that has no engine of its own yet.
    pub tts: tts::SharedTts,
    /// The voices agents may pick.
    pub voices: VoiceCatalogue,
    /// Speech-to-text; `None` when the configured engine could not be set up (agent calls are
    /// then refused with the reason in [`Engines::stt_missing`]).
    pub stt: Option<stt::SharedStt>,
    /// Why there is no speech-to-text engine.
    pub stt_missing: Option<String>,
    /// Silero's shared sessions; `None` = webrtc-vad.
    pub silero: Option<Arc<SileroModel>>,
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
        let stt: Result<stt::SharedStt, String> = match cfg.stt {
            SttChoice::Embedded => cached(&WHISPER, models_dir, || {
                let dir = models_dir.join("whisper-tiny.en");
                stt::WhisperEngine::load(&dir, cfg.stt_workers)
                    .map(|e| {
                        tracing::info!(dir = %dir.display(), workers = cfg.stt_workers, "STT engine: Whisper tiny.en");
                        Arc::new(e) as stt::SharedStt
                    })
                    .map_err(|e| format!("the embedded speech-to-text engine is not available ({e}); run `make models`"))
            }),
            SttChoice::Openai => match &cfg.openai_api_key {
                Some(key) => Ok(Arc::new(stt::OpenAiStt::new(
                    cfg.openai_base_url.clone(),
                    key.clone(),
                    cfg.stt_model.clone(),
                ))),
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
        let (stt, stt_missing) = match stt {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            tts: Arc::new(tts::espeak::EspeakTts::new()),
            voices: VoiceCatalogue::for_models_dir(models_dir),
            stt,
            stt_missing,
            silero,
        }
    }

    /// Whether an agent speaking `language` can be heard; the reason when not.
    pub fn check_language(&self, language: &str) -> Result<(), String> {
        match &self.stt {
            None => Err(self.stt_missing.clone().unwrap_or_else(|| "no speech-to-text engine".into())),
            Some(stt) if !stt.covers(language) => Err(format!(
                "no installed speech-to-text engine understands {language} ({} covers English only)",
                stt.name()
            )),
            Some(_) => Ok(()),
        }
    }

    /// The engine voice that speaks `voice_id` (the catalogue's default when unknown). Until the
    /// Piper engine lands, its voices are spoken by espeak-ng's voice for the same language.
    pub fn engine_voice(&self, voice_id: &str) -> String {
        let voice: Option<&Voice> = self.voices.get(voice_id);
        match voice {
            Some(v) if v.provider == "espeak-ng" => v.engine_voice.to_string(),
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
