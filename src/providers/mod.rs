//! Model providers behind traits: speech-to-text, text-to-speech (and, later, the LLM) — the
//! embedded offline engines that work out of the box, and OpenAI-compatible remote engines.
//! Coarse boundaries: calls hold `Arc<dyn …>` engines shared by every call.

pub mod onnx;
pub mod stt;
pub mod tts;

use std::path::Path;
use std::sync::Arc;

use crate::voices::{Voice, VoiceCatalogue};

/// The engines every call shares, loaded once at start-up.
pub struct Engines {
    /// Speaks every catalogue voice that has no engine of its own yet.
    pub tts: tts::SharedTts,
    /// The voices agents may pick.
    pub voices: VoiceCatalogue,
}

impl Engines {
    /// The embedded engines available with the weights in `models_dir`.
    pub fn load(models_dir: &Path) -> Self {
        Self {
            tts: Arc::new(tts::espeak::EspeakTts::new()),
            voices: VoiceCatalogue::for_models_dir(models_dir),
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
