-- Agents, phone numbers and API keys. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Timestamps are RFC 3339 UTC text with millisecond precision (sorts chronologically as text).
-- Flags are BIGINT 0/1: sqlx's Any driver cannot decode SQLite BOOLEAN columns.

CREATE TABLE agents (
    id                       TEXT PRIMARY KEY,
    version                  BIGINT NOT NULL,
    name                     TEXT NOT NULL,
    description              TEXT,
    voice_mode               TEXT NOT NULL,
    enable_messaging         BIGINT NOT NULL,
    model_tier               TEXT NOT NULL,
    system_prompt            TEXT,
    begin_message            TEXT,
    voice                    TEXT NOT NULL,
    transfer_number          TEXT,
    voicemail_message        TEXT,
    stt_mode                 TEXT NOT NULL,
    ambient_sound            TEXT NOT NULL,
    denoising_mode           TEXT NOT NULL,
    max_silence_ms           BIGINT NOT NULL,
    voice_speed              DOUBLE PRECISION NOT NULL,
    interruption_sensitivity DOUBLE PRECISION NOT NULL,
    enable_backchannel       BIGINT NOT NULL,
    language                 TEXT NOT NULL,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL
);
CREATE INDEX agents_created_at ON agents (created_at);

CREATE TABLE phone_numbers (
    id           TEXT PRIMARY KEY,
    phone_number TEXT NOT NULL UNIQUE,
    country      TEXT,
    status       TEXT NOT NULL,
    number_type  TEXT NOT NULL,
    agent_id     TEXT REFERENCES agents (id),
    created_at   TEXT NOT NULL
);
CREATE INDEX phone_numbers_agent_id ON phone_numbers (agent_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT,
    key_prefix   TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
