//! The agent model: every knob of an AgentPhone agent with its type, allowed values, range and
//! default, plus the pure rules that turn a create or patch request into a valid [`AgentConfig`].
//!
//! The REST layer deserialises bodies into [`AgentCreate`] / [`AgentPatch`] and calls
//! [`AgentConfig::create`] / [`AgentConfig::apply`]; the store persists the result; the call
//! pipeline (later) reads the same struct. Validation errors name the JSON field.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::voices::VoiceCatalogue;

/// A field-level validation failure: which JSON field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The camelCase JSON name of the offending field.
    pub field: &'static str,
    /// What is wrong and what would be allowed.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// Declares a string enum with its wire names, `as_str`, parsing and the list of allowed values.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? } default $default:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[allow(clippy::enum_variant_names)]
        pub enum $name {
            $(
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            /// Every wire value, in documentation order.
            pub const ALL: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some(Self::$variant),)+ _ => None }
            }
        }

        impl Default for $name {
            fn default() -> Self { Self::$default }
        }
    };
}

wire_enum!(
    /// How the conversation is driven.
    VoiceMode { Webhook = "webhook", Hosted = "hosted" } default Webhook
);
wire_enum!(
    /// Which configured LLM answers: fastest … best.
    ModelTier { Turbo = "turbo", Balanced = "balanced", Max = "max" } default Balanced
);
wire_enum!(
    /// Streaming partials with short endpointing, or a stronger final pass.
    SttMode { Fast = "fast", Accurate = "accurate" } default Fast
);
wire_enum!(
    /// The bed mixed under every outbound frame.
    AmbientSound { None = "none", Office = "office", CoffeeShop = "coffee-shop", Outdoor = "outdoor" } default None
);
wire_enum!(
    /// What the listener suppresses before speech recognition.
    DenoisingMode {
        NoiseCancellation = "noise-cancellation",
        NoiseAndBackgroundSpeechCancellation = "noise-and-background-speech-cancellation",
    } default NoiseCancellation
);

/// BCP-47 languages an agent may speak (PROTOCOLS.md §1).
pub const LANGUAGES: &[&str] = &[
    "af-ZA", "ar-SA", "az-AZ", "bg-BG", "bs-BA", "ca-ES", "cs-CZ", "cy-GB", "da-DK", "de-DE", "el-GR",
    "en-AU", "en-GB", "en-IN", "en-NZ", "en-US", "es-419", "es-ES", "fa-IR", "fi-FI", "fil-PH", "fr-CA",
    "fr-FR", "gl-ES", "he-IL", "hi-IN", "hr-HR", "hu-HU", "hy-AM", "id-ID", "is-IS", "it-IT", "ja-JP",
    "kk-KZ", "kn-IN", "ko-KR", "lt-LT", "lv-LV", "mk-MK", "mr-IN", "ms-MY", "ne-NP", "nl-BE", "nl-NL",
    "no-NO", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sk-SK", "sl-SI", "sr-RS", "sv-SE", "sw-KE",
    "ta-IN", "th-TH", "tr-TR", "uk-UA", "ur-IN", "vi-VN", "yue-CN", "zh-CN",
];

/// Limits and defaults of the numeric and text fields.
pub mod limits {
    pub const NAME_MAX_CHARS: usize = 200;
    pub const DESCRIPTION_MAX_CHARS: usize = 2_000;
    pub const SYSTEM_PROMPT_MAX_CHARS: usize = 32_000;
    pub const BEGIN_MESSAGE_MAX_CHARS: usize = 2_000;
    pub const VOICEMAIL_MESSAGE_MAX_CHARS: usize = 2_000;
    pub const MAX_SILENCE_MS_MIN: i64 = 10_000;
    pub const MAX_SILENCE_MS_MAX: i64 = 3_600_000;
    pub const MAX_SILENCE_MS_DEFAULT: i64 = 600_000;
    pub const VOICE_SPEED_MIN: f64 = 0.5;
    pub const VOICE_SPEED_MAX: f64 = 2.0;
    pub const VOICE_SPEED_DEFAULT: f64 = 1.0;
    pub const INTERRUPTION_SENSITIVITY_MIN: f64 = 0.0;
    pub const INTERRUPTION_SENSITIVITY_MAX: f64 = 1.0;
    pub const INTERRUPTION_SENSITIVITY_DEFAULT: f64 = 0.8;
    pub const LANGUAGE_DEFAULT: &str = "en-US";
}

/// A fully resolved, valid agent configuration (everything but id, timestamps and numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub name: String,
    pub description: Option<String>,
    pub voice_mode: VoiceMode,
    pub enable_messaging: bool,
    pub model_tier: ModelTier,
    pub system_prompt: Option<String>,
    pub begin_message: Option<String>,
    pub voice: String,
    pub transfer_number: Option<String>,
    pub voicemail_message: Option<String>,
    pub stt_mode: SttMode,
    pub ambient_sound: AmbientSound,
    pub denoising_mode: DenoisingMode,
    pub max_silence_ms: i64,
    pub voice_speed: f64,
    pub interruption_sensitivity: f64,
    pub enable_backchannel: bool,
    pub language: String,
}

/// `POST /v1/agents` body. Absent or `null` fields take their defaults; unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentCreate {
    /// 1–200 characters.
    pub name: String,
    /// ≤ 2000 characters.
    pub description: Option<String>,
    pub voice_mode: Option<VoiceMode>,
    pub enable_messaging: Option<bool>,
    pub model_tier: Option<ModelTier>,
    /// ≤ 32 000 characters; `{{name}}` placeholders are filled per call.
    pub system_prompt: Option<String>,
    /// ≤ 2000 characters; spoken first on every call.
    pub begin_message: Option<String>,
    /// A `voice_id` from `GET /v1/agents/voices`.
    pub voice: Option<String>,
    /// E.164 (`+` and 8–15 digits); `""` means none.
    pub transfer_number: Option<String>,
    /// ≤ 2000 characters; `""` disables.
    pub voicemail_message: Option<String>,
    pub stt_mode: Option<SttMode>,
    pub ambient_sound: Option<AmbientSound>,
    pub denoising_mode: Option<DenoisingMode>,
    /// 10 000 – 3 600 000.
    pub max_silence_ms: Option<i64>,
    /// 0.5 – 2.0.
    pub voice_speed: Option<f64>,
    /// 0.0 – 1.0.
    pub interruption_sensitivity: Option<f64>,
    pub enable_backchannel: Option<bool>,
    /// BCP-47, one of the supported languages.
    pub language: Option<String>,
}

/// `PATCH /v1/agents/{id}` body: absent = unchanged, `null` = cleared (nullable fields only).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<VoiceMode>)]
    pub voice_mode: Option<Option<VoiceMode>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub enable_messaging: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ModelTier>)]
    pub model_tier: Option<Option<ModelTier>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub begin_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub voice: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub transfer_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub voicemail_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SttMode>)]
    pub stt_mode: Option<Option<SttMode>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AmbientSound>)]
    pub ambient_sound: Option<Option<AmbientSound>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DenoisingMode>)]
    pub denoising_mode: Option<Option<DenoisingMode>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_silence_ms: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub voice_speed: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub interruption_sensitivity: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub enable_backchannel: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub language: Option<Option<String>>,
}

/// Distinguishes a present `null` (`Some(None)`) from an absent field (`None`, via `default`).
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A non-nullable field given `null` in a patch is an error; otherwise the new value if present.
fn not_null<T>(field: &'static str, v: Option<Option<T>>) -> Result<Option<T>, FieldError> {
    match v {
        None => Ok(None),
        Some(None) => Err(FieldError::new(field, "may not be null")),
        Some(Some(x)) => Ok(Some(x)),
    }
}

impl AgentConfig {
    /// Builds a new agent from a create request, filling defaults and validating every field.
    pub fn create(req: AgentCreate, voices: &VoiceCatalogue) -> Result<Self, FieldError> {
        let cfg = Self {
            name: req.name,
            description: req.description,
            voice_mode: req.voice_mode.unwrap_or_default(),
            enable_messaging: req.enable_messaging.unwrap_or(true),
            model_tier: req.model_tier.unwrap_or_default(),
            system_prompt: req.system_prompt,
            begin_message: req.begin_message,
            voice: req.voice.unwrap_or_else(|| voices.default_voice().to_string()),
            transfer_number: empty_to_none(req.transfer_number),
            voicemail_message: empty_to_none(req.voicemail_message),
            stt_mode: req.stt_mode.unwrap_or_default(),
            ambient_sound: req.ambient_sound.unwrap_or_default(),
            denoising_mode: req.denoising_mode.unwrap_or_default(),
            max_silence_ms: req.max_silence_ms.unwrap_or(limits::MAX_SILENCE_MS_DEFAULT),
            voice_speed: req.voice_speed.unwrap_or(limits::VOICE_SPEED_DEFAULT),
            interruption_sensitivity: req
                .interruption_sensitivity
                .unwrap_or(limits::INTERRUPTION_SENSITIVITY_DEFAULT),
            enable_backchannel: req.enable_backchannel.unwrap_or(true),
            language: req.language.unwrap_or_else(|| limits::LANGUAGE_DEFAULT.to_string()),
        };
        cfg.validate(voices)?;
        Ok(cfg)
    }

    /// Applies a patch: absent fields stay, `null` clears nullable fields. Validates the result;
    /// on error `self` is left unchanged.
    pub fn apply(&mut self, p: AgentPatch, voices: &VoiceCatalogue) -> Result<(), FieldError> {
        let mut next = self.clone();
        if let Some(v) = not_null("name", p.name)? {
            next.name = v;
        }
        if let Some(v) = p.description {
            next.description = v;
        }
        if let Some(v) = not_null("voiceMode", p.voice_mode)? {
            next.voice_mode = v;
        }
        if let Some(v) = not_null("enableMessaging", p.enable_messaging)? {
            next.enable_messaging = v;
        }
        if let Some(v) = not_null("modelTier", p.model_tier)? {
            next.model_tier = v;
        }
        if let Some(v) = p.system_prompt {
            next.system_prompt = v;
        }
        if let Some(v) = p.begin_message {
            next.begin_message = v;
        }
        if let Some(v) = not_null("voice", p.voice)? {
            next.voice = v;
        }
        if let Some(v) = p.transfer_number {
            next.transfer_number = empty_to_none(v);
        }
        if let Some(v) = p.voicemail_message {
            next.voicemail_message = empty_to_none(v);
        }
        if let Some(v) = not_null("sttMode", p.stt_mode)? {
            next.stt_mode = v;
        }
        if let Some(v) = not_null("ambientSound", p.ambient_sound)? {
            next.ambient_sound = v;
        }
        if let Some(v) = not_null("denoisingMode", p.denoising_mode)? {
            next.denoising_mode = v;
        }
        if let Some(v) = not_null("maxSilenceMs", p.max_silence_ms)? {
            next.max_silence_ms = v;
        }
        if let Some(v) = not_null("voiceSpeed", p.voice_speed)? {
            next.voice_speed = v;
        }
        if let Some(v) = not_null("interruptionSensitivity", p.interruption_sensitivity)? {
            next.interruption_sensitivity = v;
        }
        if let Some(v) = not_null("enableBackchannel", p.enable_backchannel)? {
            next.enable_backchannel = v;
        }
        if let Some(v) = not_null("language", p.language)? {
            next.language = v;
        }
        next.validate(voices)?;
        *self = next;
        Ok(())
    }

    /// Checks every rule of the PROTOCOLS.md agent table.
    pub fn validate(&self, voices: &VoiceCatalogue) -> Result<(), FieldError> {
        use limits::*;
        let chars = self.name.chars().count();
        if chars == 0 || self.name.trim().is_empty() {
            return Err(FieldError::new("name", "must not be empty (1–200 characters)"));
        }
        check_len("name", Some(&self.name), NAME_MAX_CHARS)?;
        check_len("description", self.description.as_deref(), DESCRIPTION_MAX_CHARS)?;
        check_len("systemPrompt", self.system_prompt.as_deref(), SYSTEM_PROMPT_MAX_CHARS)?;
        check_len("beginMessage", self.begin_message.as_deref(), BEGIN_MESSAGE_MAX_CHARS)?;
        check_len("voicemailMessage", self.voicemail_message.as_deref(), VOICEMAIL_MESSAGE_MAX_CHARS)?;
        if voices.get(&self.voice).is_none() {
            return Err(FieldError::new(
                "voice",
                format!(
                    "unknown voice '{}'; use a voice_id from GET /v1/agents/voices (e.g. '{}')",
                    self.voice,
                    voices.default_voice()
                ),
            ));
        }
        if let Some(n) = &self.transfer_number {
            if !is_e164(n) {
                return Err(FieldError::new(
                    "transferNumber",
                    format!("'{n}' is not an E.164 number ('+' then 8–15 digits), or \"\" to clear"),
                ));
            }
        }
        if !(MAX_SILENCE_MS_MIN..=MAX_SILENCE_MS_MAX).contains(&self.max_silence_ms) {
            return Err(FieldError::new(
                "maxSilenceMs",
                format!(
                    "must be between {MAX_SILENCE_MS_MIN} and {MAX_SILENCE_MS_MAX} (got {})",
                    self.max_silence_ms
                ),
            ));
        }
        check_range("voiceSpeed", self.voice_speed, VOICE_SPEED_MIN, VOICE_SPEED_MAX)?;
        check_range(
            "interruptionSensitivity",
            self.interruption_sensitivity,
            INTERRUPTION_SENSITIVITY_MIN,
            INTERRUPTION_SENSITIVITY_MAX,
        )?;
        if !LANGUAGES.contains(&self.language.as_str()) {
            return Err(FieldError::new(
                "language",
                format!("'{}' is not supported; allowed: {}", self.language, LANGUAGES.join(", ")),
            ));
        }
        Ok(())
    }
}

fn empty_to_none(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn check_len(field: &'static str, v: Option<&str>, max: usize) -> Result<(), FieldError> {
    match v {
        Some(s) if s.chars().count() > max => Err(FieldError::new(
            field,
            format!("must be at most {max} characters (got {})", s.chars().count()),
        )),
        _ => Ok(()),
    }
}

fn check_range(field: &'static str, v: f64, min: f64, max: f64) -> Result<(), FieldError> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be between {min:.1} and {max:.1} (got {v})")))
    }
}

/// E.164: a `+` followed by 8–15 digits, the first not zero.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voices() -> VoiceCatalogue {
        VoiceCatalogue::embedded()
    }

    fn create(json: &str) -> Result<AgentConfig, FieldError> {
        let req: AgentCreate = serde_json::from_str(json).expect("deserialises");
        AgentConfig::create(req, &voices())
    }

    #[test]
    fn defaults_follow_the_protocol_table() {
        let a = create(r#"{"name":"A"}"#).unwrap();
        assert_eq!(a.voice_mode, VoiceMode::Webhook);
        assert!(a.enable_messaging);
        assert_eq!(a.model_tier, ModelTier::Balanced);
        assert_eq!(a.stt_mode, SttMode::Fast);
        assert_eq!(a.ambient_sound, AmbientSound::None);
        assert_eq!(a.denoising_mode, DenoisingMode::NoiseCancellation);
        assert_eq!(a.max_silence_ms, 600_000);
        assert_eq!(a.voice_speed, 1.0);
        assert_eq!(a.interruption_sensitivity, 0.8);
        assert!(a.enable_backchannel);
        assert_eq!(a.language, "en-US");
        assert_eq!(a.voice, voices().default_voice());
        assert_eq!((a.description, a.system_prompt, a.transfer_number), (None, None, None));
    }

    #[test]
    fn numeric_edges_in_and_just_out() {
        let cases: &[(&str, &str, bool)] = &[
            ("maxSilenceMs", "10000", true),
            ("maxSilenceMs", "9999", false),
            ("maxSilenceMs", "3600000", true),
            ("maxSilenceMs", "3600001", false),
            ("voiceSpeed", "0.5", true),
            ("voiceSpeed", "0.49", false),
            ("voiceSpeed", "2.0", true),
            ("voiceSpeed", "2.01", false),
            ("interruptionSensitivity", "0", true),
            ("interruptionSensitivity", "-0.01", false),
            ("interruptionSensitivity", "1", true),
            ("interruptionSensitivity", "1.01", false),
        ];
        for (field, value, ok) in cases {
            let r = create(&format!(r#"{{"name":"A","{field}":{value}}}"#));
            assert_eq!(r.is_ok(), *ok, "{field}={value}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.field, *field);
            }
        }
    }

    #[test]
    fn text_lengths_are_counted_in_characters() {
        let name200 = "é".repeat(200);
        assert!(create(&format!(r#"{{"name":"{name200}"}}"#)).is_ok());
        let e = create(&format!(r#"{{"name":"{name200}x"}}"#)).unwrap_err();
        assert_eq!(e.field, "name");
        assert_eq!(create(r#"{"name":""}"#).unwrap_err().field, "name");
        let long = "a".repeat(32_001);
        let e = create(&format!(r#"{{"name":"A","systemPrompt":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.field, "systemPrompt");
    }

    #[test]
    fn transfer_number_is_e164_and_empty_clears() {
        assert!(is_e164("+14155550123"));
        assert!(is_e164("+12345678"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("14155550123"));
        assert!(!is_e164("+0155550123"));
        assert!(!is_e164("+1415555012a"));
        let a = create(r#"{"name":"A","transferNumber":""}"#).unwrap();
        assert_eq!(a.transfer_number, None);
        assert_eq!(create(r#"{"name":"A","transferNumber":"555"}"#).unwrap_err().field, "transferNumber");
    }

    #[test]
    fn language_and_voice_must_be_known() {
        for l in LANGUAGES {
            assert!(create(&format!(r#"{{"name":"A","language":"{l}"}}"#)).is_ok(), "{l}");
        }
        let e = create(r#"{"name":"A","language":"en-us"}"#).unwrap_err();
        assert_eq!(e.field, "language");
        assert!(e.message.contains("en-US"));
        assert_eq!(create(r#"{"name":"A","voice":"nope"}"#).unwrap_err().field, "voice");
    }

    #[test]
    fn enum_wire_names_round_trip() {
        for v in DenoisingMode::ALL {
            assert_eq!(DenoisingMode::parse(v).unwrap().as_str(), *v);
        }
        for v in AmbientSound::ALL {
            assert_eq!(AmbientSound::parse(v).unwrap().as_str(), *v);
        }
        assert!(serde_json::from_str::<AgentCreate>(r#"{"name":"A","sttMode":"slow"}"#).is_err());
    }

    #[test]
    fn patch_absent_keeps_null_clears_and_errors_leave_the_agent_unchanged() {
        let mut a = create(r#"{"name":"A","description":"d","voiceSpeed":1.5}"#).unwrap();
        let p: AgentPatch = serde_json::from_str(r#"{"description":null}"#).unwrap();
        a.apply(p, &voices()).unwrap();
        assert_eq!(a.description, None);
        assert_eq!(a.voice_speed, 1.5);
        let before = a.clone();
        let p: AgentPatch = serde_json::from_str(r#"{"name":"B","voiceSpeed":null}"#).unwrap();
        assert_eq!(a.apply(p, &voices()).unwrap_err().field, "voiceSpeed");
        assert_eq!(a, before);
        let p: AgentPatch = serde_json::from_str(r#"{"name":"B","voiceSpeed":3}"#).unwrap();
        assert_eq!(a.apply(p, &voices()).unwrap_err().field, "voiceSpeed");
        assert_eq!(a, before);
    }
}

/// Settings one call places over its agent's (`POST /v1/calls`), stored with the call as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallOverrides {
    /// Spoken first instead of the agent's `beginMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_greeting: Option<String>,
    /// Replaces the agent's `systemPrompt` for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Extra `{{var}}` values for the prompt (beside from, to, callId, agentName).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub variables: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_tier: Option<ModelTier>,
}

impl CallOverrides {
    /// Applies the overrides to the agent's settings (the variables are the caller's to add).
    pub fn apply(&self, config: &mut AgentConfig) {
        if let Some(g) = &self.initial_greeting {
            config.begin_message = Some(g.clone());
        }
        if let Some(p) = &self.system_prompt {
            config.system_prompt = Some(p.clone());
        }
        if let Some(t) = self.model_tier {
            config.model_tier = t;
        }
    }
}
