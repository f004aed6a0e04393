//! Switchboard — a hosted-mode voice agent runtime.
//!
//! A telephony gateway opens one media websocket per phone call; Switchboard runs the agent on
//! that call (listen → decide → think → speak → play out) and serves an AgentPhone-compatible
//! REST API for agents, numbers and calls. See `../shared/DESIGN.md` for the whole design.
//!
//! # Module map
//! ```text
//! main.rs        thin CLI: serve | keys … | loadtest
//! config         raw settings (flags, env, TOML file) → resolved Config
//! server         binds the listener, start-up (store, keys), drain and shutdown
//! api/           REST (axum): agents, numbers, voices, operator endpoints, OpenAPI; ApiError
//! agent          the agent model: fields, enums, ranges, defaults, create/patch rules
//! voices         the voice catalogue (single source of truth for `voice`)
//! store/         SQL store (sqlx Any: SQLite embedded default; PostgreSQL-ready SQL)
//! metrics        typed metrics + Prometheus exposition
//! logging        tracing subscriber: text or JSON lines
//! transport/     media-websocket protocols, answer endpoints, gateway call control
//! call/          per-call actors (listener, conversation, speaker, playout), turn state machine
//! audio/         sync DSP: codecs, resampling, denoise, VAD
//! providers/     engines: stt/ (Whisper tiny.en on candle, OpenAI-compatible), tts/, onnx set-up
//! webhook/       webhook voice mode (signed agent.message turns), call events queue + worker
//! loadtest/      `switchboard loadtest`: simulated gateway callers, per-turn measures, report
//! ```

pub mod agent;
pub mod api;
pub mod audio;
pub mod call;
pub mod config;
pub mod loadtest;
pub mod logging;
pub mod metrics;
pub mod providers;
pub mod server;
pub mod store;
pub mod transport;
pub mod voices;
pub mod webhook;
