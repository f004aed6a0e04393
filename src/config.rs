//! Settings in two layers: [`RawConfig`] (flags and environment through clap, plus an optional
//! TOML file) and the resolved, typed [`Config`] the server runs with.
//!
//! Precedence: command-line flag > environment variable > config file > built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Which speech-to-text engine serves calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SttChoice {
    /// Whisper tiny.en from the models directory (default).
    #[default]
    Embedded,
    /// An OpenAI-compatible `/audio/transcriptions` endpoint (`--openai-base-url`).
    Openai,
}

/// Which text-to-speech engines speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum TtsChoice {
    /// Piper and espeak-ng, offline (default).
    #[default]
    Embedded,
    /// Also an OpenAI-compatible `/audio/speech` endpoint (`--openai-base-url`): its voices
    /// join the catalogue (and become the default voice).
    Openai,
}

/// Which language model answers hosted-mode agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LlmChoice {
    /// SmolLM2-135M-Instruct on llama.cpp from the models directory (default).
    #[default]
    Embedded,
    /// An OpenAI-compatible `/chat/completions` endpoint (`--openai-base-url`), model by the
    /// agent's `modelTier`.
    Openai,
}

/// Which voice-activity detector listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum VadChoice {
    /// Silero when its weights and onnxruntime are present, else webrtc-vad (default).
    #[default]
    Auto,
    Silero,
    Webrtc,
}

/// A gateway that can place outbound calls (`POST /v1/calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutboundGateway {
    Twilio,
    Telnyx,
    Vonage,
    Plivo,
}

impl OutboundGateway {
    pub const ALL: [OutboundGateway; 4] =
        [OutboundGateway::Twilio, OutboundGateway::Telnyx, OutboundGateway::Vonage, OutboundGateway::Plivo];

    /// The lower-case name, as in the API, the settings and the call record's transport.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Vonage => "vonage",
            Self::Plivo => "plivo",
        }
    }

    /// The media-websocket protocol the gateway streams the answered call over.
    pub fn protocol(self) -> crate::transport::Protocol {
        use crate::transport::Protocol;
        match self {
            Self::Twilio => Protocol::Twilio,
            Self::Telnyx => Protocol::Telnyx,
            Self::Vonage => Protocol::Vonage,
            Self::Plivo => Protocol::Plivo,
        }
    }
}

/// Raw settings as given: every field optional, validated and defaulted by [`RawConfig::resolve`].
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<String>,
    /// Database URL: sqlite://FILE or postgres://… [default: sqlite://switchboard.db].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory holding the embedded model weights [default: ./models].
    #[arg(long, env = "SWITCHBOARD_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// An API key to register at start (idempotent), so scripts and tests know a valid key.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds to let live calls and in-flight requests finish after SIGTERM [default: 30].
    #[arg(long, env = "SWITCHBOARD_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Seconds after which a REST request is answered 408 [default: 30].
    #[arg(long, env = "SWITCHBOARD_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Public base URL gateways reach this server at (e.g. https://voice.example.com); used in
    /// TwiML/TeXML/NCCO/XML answers. Default: taken from the request's Host header.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Most concurrent calls; more are refused with a close reason [default: 1000].
    #[arg(long, env = "SWITCHBOARD_MAX_CALLS")]
    pub max_calls: Option<usize>,
    /// Seconds a connected media socket may take to send its start message [default: 10].
    #[arg(long, env = "SWITCHBOARD_MEDIA_START_TIMEOUT_SECS")]
    pub media_start_timeout_secs: Option<u64>,
    /// Seconds a media token minted by an answer endpoint stays valid [default: 60].
    #[arg(long, env = "SWITCHBOARD_MEDIA_TOKEN_TTL_SECS")]
    pub media_token_ttl_secs: Option<u64>,
    /// Twilio Account SID for REST call control (hang-up, transfer).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token: REST call control and X-Twilio-Signature checks.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// Twilio REST base URL [default: https://api.twilio.com].
    #[arg(long, env = "TWILIO_API_BASE")]
    pub twilio_api_base: Option<String>,
    /// Telnyx API key for Call Control (hang-up, transfer).
    #[arg(long, env = "TELNYX_API_KEY", hide_env_values = true)]
    pub telnyx_api_key: Option<String>,
    /// Telnyx account public key (base64 Ed25519): when set, Telnyx webhooks must carry a valid
    /// `telnyx-signature-ed25519` / `telnyx-timestamp`.
    #[arg(long, env = "TELNYX_PUBLIC_KEY")]
    pub telnyx_public_key: Option<String>,
    /// Telnyx REST base URL [default: https://api.telnyx.com].
    #[arg(long, env = "TELNYX_API_BASE")]
    pub telnyx_api_base: Option<String>,
    /// Telnyx TeXML application (connection) id that outbound calls are placed on
    /// (`POST /v2/texml/calls/{connection_id}`); with the API key, enables Telnyx outbound calls.
    #[arg(long, env = "TELNYX_CONNECTION_ID")]
    pub telnyx_connection_id: Option<String>,
    /// Plivo Auth ID for REST call control.
    #[arg(long, env = "PLIVO_AUTH_ID")]
    pub plivo_auth_id: Option<String>,
    /// Plivo auth token.
    #[arg(long, env = "PLIVO_AUTH_TOKEN", hide_env_values = true)]
    pub plivo_auth_token: Option<String>,
    /// Plivo REST base URL [default: https://api.plivo.com].
    #[arg(long, env = "PLIVO_API_BASE")]
    pub plivo_api_base: Option<String>,
    /// Vonage application JWT (bearer) for Voice API call control.
    #[arg(long, env = "VONAGE_JWT", hide_env_values = true)]
    pub vonage_jwt: Option<String>,
    /// Vonage signature secret: when set, Vonage webhooks must carry a valid signed JWT
    /// (`Authorization: Bearer …`, HS256, `payload_hash` of the body).
    #[arg(long, env = "VONAGE_SIGNATURE_SECRET", hide_env_values = true)]
    pub vonage_signature_secret: Option<String>,
    /// Vonage REST base URL [default: https://api.nexmo.com].
    #[arg(long, env = "VONAGE_API_BASE")]
    pub vonage_api_base: Option<String>,
    /// Gateway of `POST /v1/calls` when the request names none [default: the only gateway with
    /// outbound credentials, if exactly one has them].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_GATEWAY", value_enum)]
    pub outbound_gateway: Option<OutboundGateway>,
    /// Speech-to-text engine [default: embedded].
    #[arg(long, env = "SWITCHBOARD_STT", value_enum)]
    pub stt: Option<SttChoice>,
    /// Speech-to-text model name for the remote engine [default: whisper-1].
    #[arg(long, env = "SWITCHBOARD_STT_MODEL")]
    pub stt_model: Option<String>,
    /// Text-to-speech engines [default: embedded].
    #[arg(long, env = "SWITCHBOARD_TTS", value_enum)]
    pub tts: Option<TtsChoice>,
    /// Speech model name for the remote engine [default: gpt-4o-mini-tts].
    #[arg(long, env = "SWITCHBOARD_TTS_MODEL")]
    pub tts_model: Option<String>,
    /// With `--stt openai`, partial transcripts from the embedded Whisper while the caller
    /// speaks, when its weights are installed [default: true].
    #[arg(long, env = "SWITCHBOARD_STT_PARTIALS")]
    pub stt_partials: Option<bool>,
    /// Threads running the embedded speech-to-text (calls queue for them) [default: 1].
    #[arg(long, env = "SWITCHBOARD_STT_WORKERS")]
    pub stt_workers: Option<usize>,
    /// Ask the Smart-Turn end-of-turn model at each caller pause [default: off].
    #[arg(long, env = "SWITCHBOARD_SMART_TURN")]
    pub smart_turn: Option<bool>,
    /// Voice-activity detector [default: auto].
    #[arg(long, env = "SWITCHBOARD_VAD", value_enum)]
    pub vad: Option<VadChoice>,
    /// Language model for hosted agents [default: embedded].
    #[arg(long, env = "SWITCHBOARD_LLM", value_enum)]
    pub llm: Option<LlmChoice>,
    /// Contexts (concurrent replies) of the embedded language model [default: 2].
    #[arg(long, env = "SWITCHBOARD_LLM_CONTEXTS")]
    pub llm_contexts: Option<usize>,
    /// Remote model for `modelTier: turbo` [default: gpt-4o-mini].
    #[arg(long, env = "SWITCHBOARD_MODEL_TURBO")]
    pub model_turbo: Option<String>,
    /// Remote model for `modelTier: balanced` [default: gpt-4o-mini].
    #[arg(long, env = "SWITCHBOARD_MODEL_BALANCED")]
    pub model_balanced: Option<String>,
    /// Remote model for `modelTier: max` [default: gpt-4o].
    #[arg(long, env = "SWITCHBOARD_MODEL_MAX")]
    pub model_max: Option<String>,
    /// Say a holding phrase when a reply has not started after this many ms [default: 1500].
    #[arg(long, env = "SWITCHBOARD_FILLER_AFTER_MS")]
    pub filler_after_ms: Option<u64>,
    /// Ask the language model on the tentative transcript, before the caller's turn is decided
    /// (dropped if the turn turns out different; costs extra requests with a paid remote model)
    /// [default: true].
    #[arg(long, env = "SWITCHBOARD_PREEMPTIVE_REPLIES")]
    pub preemptive_replies: Option<bool>,
    /// Base URL of the OpenAI-compatible API for remote engines [default: https://api.openai.com/v1].
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// API key of the OpenAI-compatible API.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Milliseconds before the first retry of a failed webhook event; each next retry doubles
    /// it (5 attempts in all) [default: 1000].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Milliseconds between checks of the webhook event queue [default: 1000].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_POLL_INTERVAL_MS")]
    pub webhook_poll_interval_ms: Option<u64>,
    /// Record agent calls as stereo WAV (caller left, agent right) [default: true]. A call
    /// placed with `disableRecording` is never recorded.
    #[arg(long, env = "SWITCHBOARD_RECORD_CALLS")]
    pub record_calls: Option<bool>,
    /// Folder of call recordings (`<call id>.wav`) [default: recordings].
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// TOML file with any of these settings (snake_case keys); flags and environment win over it.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP/websocket listener binds.
    pub listen: SocketAddr,
    /// Where agents, numbers, calls and keys live.
    pub database_url: String,
    /// Embedded model weights (fetched by `make models`).
    pub models_dir: PathBuf,
    /// Log line format.
    pub log_format: LogFormat,
    /// A key to register at start, if any (never logged).
    pub api_key: Option<String>,
    /// Shutdown deadline for draining calls and requests.
    pub drain_timeout: Duration,
    /// Per-request deadline of the REST API.
    pub request_timeout: Duration,
    /// Public base URL for gateway answers (no trailing slash); `None` = from the Host header.
    pub public_url: Option<String>,
    /// Admission cap on concurrent calls.
    pub max_calls: usize,
    /// Lifetime of media tokens minted by answer endpoints.
    pub media_token_ttl: Duration,
    /// How long a media socket may take to send its start message.
    pub media_start_timeout: Duration,
    /// Gateway REST credentials and base URLs (call control, signatures).
    pub gateways: GatewayConfig,
    /// Which engines listen and how to reach remote ones.
    pub providers: ProvidersConfig,
    /// First retry delay of a failed webhook event (doubling after each attempt).
    pub webhook_retry_base: Duration,
    /// How often the webhook worker looks for due events.
    pub webhook_poll_interval: Duration,
    /// Whether agent calls are recorded (unless placed with `disableRecording`).
    pub record_calls: bool,
    /// Where recordings are written.
    pub recordings_dir: PathBuf,
}

/// Engine choices and the OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvidersConfig {
    pub stt: SttChoice,
    pub stt_model: String,
    pub stt_workers: usize,
    /// The remote engine's partials come from the embedded Whisper (see `stt::split`).
    pub stt_partials: bool,
    pub tts: TtsChoice,
    pub tts_model: String,
    pub vad: VadChoice,
    /// Use the Smart-Turn end-of-turn model (opt-in).
    pub smart_turn: bool,
    pub llm: LlmChoice,
    pub llm_contexts: usize,
    pub model_tiers: crate::providers::llm::ModelTiers,
    /// A reply that has not produced speech after this long gets a holding phrase.
    pub filler_after: Duration,
    /// Hosted agents ask the model before the turn is decided (see `call::conversation`).
    pub preemptive_replies: bool,
    pub openai_base_url: String,
    pub openai_api_key: Option<String>,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            stt: SttChoice::Embedded,
            stt_model: "whisper-1".into(),
            tts: TtsChoice::Embedded,
            tts_model: "gpt-4o-mini-tts".into(),
            stt_workers: 1,
            stt_partials: true,
            vad: VadChoice::Auto,
            smart_turn: false,
            llm: LlmChoice::Embedded,
            llm_contexts: 2,
            model_tiers: crate::providers::llm::ModelTiers::default(),
            filler_after: Duration::from_millis(1500),
            preemptive_replies: true,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
        }
    }
}

/// Credentials and base URLs of the telephony gateways' REST APIs. Base URLs are settable so
/// tests can point them at a local server.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_api_base: String,
    pub telnyx_api_key: Option<String>,
    pub telnyx_api_base: String,
    /// Telnyx public key (base64 Ed25519) checking Telnyx webhook signatures.
    pub telnyx_public_key: Option<String>,
    /// TeXML application (connection) id for Telnyx outbound calls.
    pub telnyx_connection_id: Option<String>,
    pub plivo_auth_id: Option<String>,
    pub plivo_auth_token: Option<String>,
    pub plivo_api_base: String,
    pub vonage_jwt: Option<String>,
    /// Vonage signature secret checking Vonage webhook JWTs.
    pub vonage_signature_secret: Option<String>,
    pub vonage_api_base: String,
    /// Gateway of outbound calls whose request names none.
    pub outbound_gateway: Option<OutboundGateway>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_api_base: "https://api.twilio.com".into(),
            telnyx_api_key: None,
            telnyx_api_base: "https://api.telnyx.com".into(),
            telnyx_public_key: None,
            telnyx_connection_id: None,
            plivo_auth_id: None,
            plivo_auth_token: None,
            plivo_api_base: "https://api.plivo.com".into(),
            vonage_jwt: None,
            vonage_signature_secret: None,
            vonage_api_base: "https://api.nexmo.com".into(),
            outbound_gateway: None,
        }
    }
}

/// Configuration errors, each naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    ParseFile { path: PathBuf, source: Box<toml::de::Error> },
    #[error("listen: '{value}' is not a socket address like 127.0.0.1:8080")]
    Listen { value: String },
    #[error("{setting}: must be at least 1 second")]
    ZeroDuration { setting: &'static str },
    #[error("max_calls: must be at least 1")]
    ZeroCalls,
    #[error("llm_contexts: must be at least 1")]
    ZeroLlmContexts,
    #[error("stt_workers: must be at least 1")]
    ZeroWorkers,
    #[error("{setting}: must be at least 1 ms")]
    ZeroMillis { setting: &'static str },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://switchboard.db".to_string(),
            models_dir: PathBuf::from("models"),
            log_format: LogFormat::Text,
            api_key: None,
            drain_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            public_url: None,
            max_calls: 1000,
            media_token_ttl: Duration::from_secs(60),
            media_start_timeout: Duration::from_secs(10),
            gateways: GatewayConfig::default(),
            providers: ProvidersConfig::default(),
            webhook_retry_base: Duration::from_secs(1),
            webhook_poll_interval: Duration::from_secs(1),
            record_calls: true,
            recordings_dir: PathBuf::from("recordings"),
        }
    }
}

impl RawConfig {
    /// Reads the TOML file (if one is named) underneath these values, then fills defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => Self::from_file(path)?,
            None => RawConfig::default(),
        };
        let merged = self.over(file);
        let defaults = Config::default();
        let listen = match merged.listen {
            Some(v) => v.parse().map_err(|_| ConfigError::Listen { value: v })?,
            None => defaults.listen,
        };
        Ok(Config {
            listen,
            database_url: merged.database_url.unwrap_or(defaults.database_url),
            models_dir: merged.models_dir.unwrap_or(defaults.models_dir),
            log_format: merged.log_format.unwrap_or_default(),
            api_key: merged.api_key.filter(|k| !k.is_empty()),
            drain_timeout: seconds("drain_timeout_secs", merged.drain_timeout_secs, defaults.drain_timeout)?,
            request_timeout: seconds(
                "request_timeout_secs",
                merged.request_timeout_secs,
                defaults.request_timeout,
            )?,
            public_url: merged.public_url.map(|u| u.trim_end_matches('/').to_string()),
            max_calls: match merged.max_calls {
                Some(0) => return Err(ConfigError::ZeroCalls),
                Some(n) => n,
                None => defaults.max_calls,
            },
            media_token_ttl: seconds(
                "media_token_ttl_secs",
                merged.media_token_ttl_secs,
                defaults.media_token_ttl,
            )?,
            media_start_timeout: seconds(
                "media_start_timeout_secs",
                merged.media_start_timeout_secs,
                defaults.media_start_timeout,
            )?,
            gateways: {
                let d = GatewayConfig::default();
                GatewayConfig {
                    twilio_account_sid: merged.twilio_account_sid,
                    twilio_auth_token: merged.twilio_auth_token,
                    twilio_api_base: merged.twilio_api_base.unwrap_or(d.twilio_api_base),
                    telnyx_api_key: merged.telnyx_api_key,
                    telnyx_api_base: merged.telnyx_api_base.unwrap_or(d.telnyx_api_base),
                    telnyx_public_key: merged.telnyx_public_key.filter(|k| !k.is_empty()),
                    telnyx_connection_id: merged.telnyx_connection_id.filter(|c| !c.is_empty()),
                    plivo_auth_id: merged.plivo_auth_id,
                    plivo_auth_token: merged.plivo_auth_token,
                    plivo_api_base: merged.plivo_api_base.unwrap_or(d.plivo_api_base),
                    vonage_jwt: merged.vonage_jwt,
                    vonage_signature_secret: merged.vonage_signature_secret.filter(|k| !k.is_empty()),
                    vonage_api_base: merged.vonage_api_base.unwrap_or(d.vonage_api_base),
                    outbound_gateway: merged.outbound_gateway,
                }
            },
            providers: {
                let d = ProvidersConfig::default();
                ProvidersConfig {
                    stt: merged.stt.unwrap_or(d.stt),
                    stt_model: merged.stt_model.unwrap_or(d.stt_model),
                    tts: merged.tts.unwrap_or(d.tts),
                    tts_model: merged.tts_model.unwrap_or(d.tts_model),
                    stt_workers: match merged.stt_workers {
                        Some(0) => return Err(ConfigError::ZeroWorkers),
                        Some(n) => n,
                        None => d.stt_workers,
                    },
                    stt_partials: merged.stt_partials.unwrap_or(d.stt_partials),
                    vad: merged.vad.unwrap_or(d.vad),
                    smart_turn: merged.smart_turn.unwrap_or(d.smart_turn),
                    llm: merged.llm.unwrap_or(d.llm),
                    llm_contexts: match merged.llm_contexts {
                        Some(0) => return Err(ConfigError::ZeroLlmContexts),
                        Some(n) => n,
                        None => d.llm_contexts,
                    },
                    model_tiers: crate::providers::llm::ModelTiers {
                        turbo: merged.model_turbo.unwrap_or(d.model_tiers.turbo),
                        balanced: merged.model_balanced.unwrap_or(d.model_tiers.balanced),
                        max: merged.model_max.unwrap_or(d.model_tiers.max),
                    },
                    filler_after: merged.filler_after_ms.map(Duration::from_millis).unwrap_or(d.filler_after),
                    preemptive_replies: merged.preemptive_replies.unwrap_or(d.preemptive_replies),
                    openai_base_url: merged
                        .openai_base_url
                        .map(|u| u.trim_end_matches('/').to_string())
                        .unwrap_or(d.openai_base_url),
                    openai_api_key: merged.openai_api_key.filter(|k| !k.is_empty()),
                }
            },
            webhook_retry_base: millis(
                "webhook_retry_base_ms",
                merged.webhook_retry_base_ms,
                defaults.webhook_retry_base,
            )?,
            webhook_poll_interval: millis(
                "webhook_poll_interval_ms",
                merged.webhook_poll_interval_ms,
                defaults.webhook_poll_interval,
            )?,
            record_calls: merged.record_calls.unwrap_or(defaults.record_calls),
            recordings_dir: merged.recordings_dir.unwrap_or(defaults.recordings_dir),
        })
    }

    fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::ReadFile { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|source| ConfigError::ParseFile { path: path.to_owned(), source: Box::new(source) })
    }

    /// `self`'s values where set, `lower`'s otherwise.
    fn over(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            listen: self.listen.or(lower.listen),
            database_url: self.database_url.or(lower.database_url),
            models_dir: self.models_dir.or(lower.models_dir),
            log_format: self.log_format.or(lower.log_format),
            api_key: self.api_key.or(lower.api_key),
            drain_timeout_secs: self.drain_timeout_secs.or(lower.drain_timeout_secs),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            public_url: self.public_url.or(lower.public_url),
            max_calls: self.max_calls.or(lower.max_calls),
            media_token_ttl_secs: self.media_token_ttl_secs.or(lower.media_token_ttl_secs),
            media_start_timeout_secs: self.media_start_timeout_secs.or(lower.media_start_timeout_secs),
            twilio_account_sid: self.twilio_account_sid.or(lower.twilio_account_sid),
            twilio_auth_token: self.twilio_auth_token.or(lower.twilio_auth_token),
            twilio_api_base: self.twilio_api_base.or(lower.twilio_api_base),
            telnyx_api_key: self.telnyx_api_key.or(lower.telnyx_api_key),
            telnyx_api_base: self.telnyx_api_base.or(lower.telnyx_api_base),
            telnyx_public_key: self.telnyx_public_key.or(lower.telnyx_public_key),
            telnyx_connection_id: self.telnyx_connection_id.or(lower.telnyx_connection_id),
            plivo_auth_id: self.plivo_auth_id.or(lower.plivo_auth_id),
            plivo_auth_token: self.plivo_auth_token.or(lower.plivo_auth_token),
            plivo_api_base: self.plivo_api_base.or(lower.plivo_api_base),
            vonage_jwt: self.vonage_jwt.or(lower.vonage_jwt),
            vonage_signature_secret: self.vonage_signature_secret.or(lower.vonage_signature_secret),
            vonage_api_base: self.vonage_api_base.or(lower.vonage_api_base),
            outbound_gateway: self.outbound_gateway.or(lower.outbound_gateway),
            stt: self.stt.or(lower.stt),
            stt_model: self.stt_model.or(lower.stt_model),
            tts: self.tts.or(lower.tts),
            tts_model: self.tts_model.or(lower.tts_model),
            stt_workers: self.stt_workers.or(lower.stt_workers),
            stt_partials: self.stt_partials.or(lower.stt_partials),
            vad: self.vad.or(lower.vad),
            smart_turn: self.smart_turn.or(lower.smart_turn),
            llm: self.llm.or(lower.llm),
            llm_contexts: self.llm_contexts.or(lower.llm_contexts),
            model_turbo: self.model_turbo.or(lower.model_turbo),
            model_balanced: self.model_balanced.or(lower.model_balanced),
            model_max: self.model_max.or(lower.model_max),
            filler_after_ms: self.filler_after_ms.or(lower.filler_after_ms),
            preemptive_replies: self.preemptive_replies.or(lower.preemptive_replies),
            openai_base_url: self.openai_base_url.or(lower.openai_base_url),
            openai_api_key: self.openai_api_key.or(lower.openai_api_key),
            webhook_retry_base_ms: self.webhook_retry_base_ms.or(lower.webhook_retry_base_ms),
            webhook_poll_interval_ms: self.webhook_poll_interval_ms.or(lower.webhook_poll_interval_ms),
            record_calls: self.record_calls.or(lower.record_calls),
            recordings_dir: self.recordings_dir.or(lower.recordings_dir),
            config: self.config,
        }
    }
}

fn seconds(setting: &'static str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::ZeroDuration { setting }),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

fn millis(setting: &'static str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::ZeroMillis { setting }),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = RawConfig::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://switchboard.db");
        assert_eq!(c.models_dir, PathBuf::from("models"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sb.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nmodels_dir = \"/m\"\nlog_format = \"json\"\n")
            .unwrap();
        let raw =
            RawConfig { config: Some(file.clone()), models_dir: Some("/flag".into()), ..Default::default() };
        let c = raw.resolve().unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.models_dir, PathBuf::from("/flag"));
        assert_eq!(c.log_format, LogFormat::Json);

        std::fs::write(&file, "outbound_gateway = \"plivo\"\ntelnyx_connection_id = \"conn-1\"\n").unwrap();
        let c = RawConfig { config: Some(file.clone()), ..Default::default() }.resolve().unwrap();
        assert_eq!(c.gateways.outbound_gateway, Some(OutboundGateway::Plivo));
        assert_eq!(c.gateways.telnyx_connection_id.as_deref(), Some("conn-1"));
        let raw = RawConfig {
            config: Some(file.clone()),
            outbound_gateway: Some(OutboundGateway::Vonage),
            ..Default::default()
        };
        assert_eq!(raw.resolve().unwrap().gateways.outbound_gateway, Some(OutboundGateway::Vonage));
        std::fs::write(&file, "outbound_gateway = \"sinch\"\n").unwrap();
        let e = RawConfig { config: Some(file), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().contains("outbound_gateway"), "{e}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = RawConfig { listen: Some("nope".into()), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().starts_with("listen:"), "{e}");
        let e = RawConfig { drain_timeout_secs: Some(0), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().contains("drain_timeout_secs"), "{e}");
        let e = RawConfig { webhook_poll_interval_ms: Some(0), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().starts_with("webhook_poll_interval_ms:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let e = RawConfig { config: Some(file), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }
}
