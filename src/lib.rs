//! Switchboard — a hosted-mode voice agent runtime.
//!
//! A telephony gateway opens one media websocket per phone call; Switchboard runs the agent on
//! that call (listen → decide → think → speak → play out) and serves an AgentPhone-compatible
//! REST API for agents, numbers and calls. See `../shared/DESIGN.md` for the whole design.
//!
//! # Module map
//! ```text
//! main.rs        thin CLI: serve | keys …
//! config         raw settings (flags, env, TOML file) → resolved Config
//! server         binds the listener, start-up (store, keys), drain and shutdown
//! api/           REST (axum): agents, numbers, voices, operator endpoints, OpenAPI; ApiError
//! agent          the agent model: fields, enums, ranges, defaults, create/patch rules
//! voices         the voice catalogue (single source of truth for `voice`)
//! store/         SQL store (sqlx Any: SQLite embedded default; PostgreSQL-ready SQL)
//! metrics        typed metrics + Prometheus exposition
//! logging        tracing subscriber: text or JSON lines
//! providers/     model engines: stt/ (embedded Whisper tiny.en via candle, remote OpenAI-compatible)
//! ```
//! Still to come (issues 3–6): `transport/` (media-websocket protocols), `call/` (per-call
//! actors, turn state machine), `audio/` (codecs, resampling, denoise, VAD, stretch, mixing),
//! `providers/` (LLM, TTS engines), `webhook/`, `loadtest/`.

pub mod agent;
pub mod api;
pub mod audio;
pub mod call;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod providers;
pub mod server;
pub mod store;
pub mod transport;
pub mod voices;
