//! The voice catalogue: the one table of voices the text-to-speech engines offer.
//!
//! `GET /v1/agents/voices` lists it and agent validation checks `voice` against it, so the two can
//! never disagree. Embedded voices: the Piper neural voice (when its weights are in the models
//! directory) and one espeak-ng voice for every supported language espeak-ng really has. With
//! `--tts openai`, the remote service's built-in voices come first (provider `openai`).

use std::path::Path;

use serde::Serialize;
use utoipa::ToSchema;

/// One voice as listed by `GET /v1/agents/voices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Voice {
    /// The id an agent's `voice` field takes.
    pub voice_id: &'static str,
    /// A human-readable name.
    pub voice_name: &'static str,
    /// The engine that speaks it (`piper`, `espeak-ng`, later remote providers).
    pub provider: &'static str,
    pub gender: &'static str,
    pub accent: &'static str,
    /// BCP-47 language the voice speaks.
    pub language: &'static str,
    /// The engine's own name for the voice (espeak voice, Piper model file stem).
    #[serde(skip)]
    pub engine_voice: &'static str,
}

/// The Piper model file whose presence enables the neural voice.
pub const PIPER_JOE_MODEL: &str = "tts/en_US-joe-medium.onnx";

const PIPER: &[Voice] = &[Voice {
    voice_id: "joe",
    voice_name: "Joe",
    provider: "piper",
    gender: "male",
    accent: "American",
    language: "en-US",
    engine_voice: "en_US-joe-medium",
}];

macro_rules! openai {
    ($($id:literal, $name:literal, $gender:literal;)+) => {
        &[$(Voice {
            voice_id: $id,
            voice_name: $name,
            provider: "openai",
            gender: $gender,
            accent: "American",
            language: "en-US",
            engine_voice: concat!("openai:", $id),
        }),+]
    };
}

/// The built-in voices of OpenAI's `/audio/speech` (multilingual; listed as en-US, the language
/// they are tuned for). Engine names carry the `openai:` prefix the router goes by.
const OPENAI: &[Voice] = openai![
    "alloy", "Alloy", "neutral"; "ash", "Ash", "male"; "ballad", "Ballad", "male";
    "coral", "Coral", "female"; "echo", "Echo", "male"; "fable", "Fable", "neutral";
    "onyx", "Onyx", "male"; "nova", "Nova", "female"; "sage", "Sage", "female";
    "shimmer", "Shimmer", "female"; "verse", "Verse", "male"; "marin", "Marin", "female";
    "cedar", "Cedar", "male";
];

macro_rules! espeak {
    ($($id:literal, $name:literal, $accent:literal, $lang:literal, $ev:literal;)+) => {
        &[$(Voice {
            voice_id: $id,
            voice_name: $name,
            provider: "espeak-ng",
            gender: "male",
            accent: $accent,
            language: $lang,
            engine_voice: $ev,
        }),+]
    };
}

/// espeak-ng 1.51 voices for the supported languages (`espeak-ng --voices`); languages without a
/// real espeak-ng voice (fil-PH, gl-ES, fr-CA, nl-BE, en-AU, en-NZ, en-IN) are left out rather
/// than faked with a neighbour.
const ESPEAK: &[Voice] = espeak![
    "espeak-en-us", "English (America)", "American", "en-US", "en-us";
    "espeak-en-gb", "English (Great Britain)", "British", "en-GB", "en-gb";
    "espeak-af", "Afrikaans", "South African", "af-ZA", "af";
    "espeak-ar", "Arabic", "Standard Arabic", "ar-SA", "ar";
    "espeak-az", "Azerbaijani", "Azerbaijani", "az-AZ", "az";
    "espeak-bg", "Bulgarian", "Bulgarian", "bg-BG", "bg";
    "espeak-bs", "Bosnian", "Bosnian", "bs-BA", "bs";
    "espeak-ca", "Catalan", "Catalan", "ca-ES", "ca";
    "espeak-cs", "Czech", "Czech", "cs-CZ", "cs";
    "espeak-cy", "Welsh", "Welsh", "cy-GB", "cy";
    "espeak-da", "Danish", "Danish", "da-DK", "da";
    "espeak-de", "German", "German", "de-DE", "de";
    "espeak-el", "Greek", "Greek", "el-GR", "el";
    "espeak-es-419", "Spanish (Latin America)", "Latin American", "es-419", "es-419";
    "espeak-es", "Spanish (Spain)", "Castilian", "es-ES", "es";
    "espeak-fa", "Persian", "Iranian", "fa-IR", "fa";
    "espeak-fi", "Finnish", "Finnish", "fi-FI", "fi";
    "espeak-fr-fr", "French (France)", "Parisian", "fr-FR", "fr-fr";
    "espeak-he", "Hebrew", "Israeli", "he-IL", "he";
    "espeak-hi", "Hindi", "Indian", "hi-IN", "hi";
    "espeak-hr", "Croatian", "Croatian", "hr-HR", "hr";
    "espeak-hu", "Hungarian", "Hungarian", "hu-HU", "hu";
    "espeak-hy", "Armenian (East)", "Eastern Armenian", "hy-AM", "hy";
    "espeak-id", "Indonesian", "Indonesian", "id-ID", "id";
    "espeak-is", "Icelandic", "Icelandic", "is-IS", "is";
    "espeak-it", "Italian", "Italian", "it-IT", "it";
    "espeak-ja", "Japanese", "Japanese", "ja-JP", "ja";
    "espeak-kk", "Kazakh", "Kazakh", "kk-KZ", "kk";
    "espeak-kn", "Kannada", "Indian", "kn-IN", "kn";
    "espeak-ko", "Korean", "Korean", "ko-KR", "ko";
    "espeak-lt", "Lithuanian", "Lithuanian", "lt-LT", "lt";
    "espeak-lv", "Latvian", "Latvian", "lv-LV", "lv";
    "espeak-mk", "Macedonian", "Macedonian", "mk-MK", "mk";
    "espeak-mr", "Marathi", "Indian", "mr-IN", "mr";
    "espeak-ms", "Malay", "Malaysian", "ms-MY", "ms";
    "espeak-ne", "Nepali", "Nepali", "ne-NP", "ne";
    "espeak-nl", "Dutch", "Netherlands", "nl-NL", "nl";
    "espeak-nb", "Norwegian Bokmål", "Norwegian", "no-NO", "nb";
    "espeak-pl", "Polish", "Polish", "pl-PL", "pl";
    "espeak-pt-br", "Portuguese (Brazil)", "Brazilian", "pt-BR", "pt-br";
    "espeak-pt", "Portuguese (Portugal)", "European", "pt-PT", "pt";
    "espeak-ro", "Romanian", "Romanian", "ro-RO", "ro";
    "espeak-ru", "Russian", "Russian", "ru-RU", "ru";
    "espeak-sk", "Slovak", "Slovak", "sk-SK", "sk";
    "espeak-sl", "Slovenian", "Slovenian", "sl-SI", "sl";
    "espeak-sr", "Serbian", "Serbian", "sr-RS", "sr";
    "espeak-sv", "Swedish", "Swedish", "sv-SE", "sv";
    "espeak-sw", "Swahili", "East African", "sw-KE", "sw";
    "espeak-ta", "Tamil", "Indian", "ta-IN", "ta";
    "espeak-th", "Thai", "Thai", "th-TH", "th";
    "espeak-tr", "Turkish", "Turkish", "tr-TR", "tr";
    "espeak-uk", "Ukrainian", "Ukrainian", "uk-UA", "uk";
    "espeak-ur", "Urdu", "Indian", "ur-IN", "ur";
    "espeak-vi", "Vietnamese (Northern)", "Northern", "vi-VN", "vi";
    "espeak-yue", "Chinese (Cantonese)", "Cantonese", "yue-CN", "yue";
    "espeak-cmn", "Chinese (Mandarin)", "Mandarin", "zh-CN", "cmn";
];

/// The voices this deployment can speak, with the default a new agent gets.
#[derive(Debug, Clone)]
pub struct VoiceCatalogue {
    voices: Vec<Voice>,
    default_voice: &'static str,
}

impl VoiceCatalogue {
    /// Every embedded voice, Piper's included (its default), regardless of installed weights.
    pub fn embedded() -> Self {
        Self::build(true, false)
    }

    /// The embedded voices whose engines can run with what is in `models_dir`: the Piper voice
    /// only when its weights were fetched; otherwise espeak-ng's American English is the default.
    pub fn for_models_dir(models_dir: &Path) -> Self {
        Self::build(models_dir.join(PIPER_JOE_MODEL).is_file(), false)
    }

    /// As [`Self::for_models_dir`], with the remote service's voices first when `openai`.
    pub fn for_engines(models_dir: &Path, openai: bool) -> Self {
        Self::build(models_dir.join(PIPER_JOE_MODEL).is_file(), openai)
    }

    fn build(with_piper: bool, with_openai: bool) -> Self {
        let mut voices = Vec::with_capacity(OPENAI.len() + PIPER.len() + ESPEAK.len());
        if with_openai {
            voices.extend_from_slice(OPENAI);
        }
        if with_piper {
            voices.extend_from_slice(PIPER);
        }
        voices.extend_from_slice(ESPEAK);
        let default_voice = voices[0].voice_id;
        Self { voices, default_voice }
    }

    pub fn all(&self) -> &[Voice] {
        &self.voices
    }

    pub fn get(&self, voice_id: &str) -> Option<&Voice> {
        self.voices.iter().find(|v| v.voice_id == voice_id)
    }

    pub fn default_voice(&self) -> &'static str {
        self.default_voice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::LANGUAGES;

    #[test]
    fn ids_are_unique_and_languages_supported() {
        let c = VoiceCatalogue::embedded();
        let mut ids: Vec<_> = c.all().iter().map(|v| v.voice_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), c.all().len());
        for v in c.all() {
            assert!(LANGUAGES.contains(&v.language), "{} speaks unsupported {}", v.voice_id, v.language);
        }
    }

    #[test]
    fn piper_only_when_its_weights_exist() {
        let dir = tempfile::tempdir().unwrap();
        let c = VoiceCatalogue::for_models_dir(dir.path());
        assert!(c.get("joe").is_none());
        assert_eq!(c.default_voice(), "espeak-en-us");
        std::fs::create_dir_all(dir.path().join("tts")).unwrap();
        std::fs::write(dir.path().join(PIPER_JOE_MODEL), b"x").unwrap();
        let c = VoiceCatalogue::for_models_dir(dir.path());
        assert_eq!(c.default_voice(), "joe");
    }
}
