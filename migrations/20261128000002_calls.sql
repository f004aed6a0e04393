-- Call records. A call is created `ringing` by an answer endpoint (with a one-time media token,
-- stored hashed) or `in-progress` directly by a media websocket authorised with an API key.
-- No foreign key to agents: the record outlives the agent it was made with.

CREATE TABLE calls (
    id                     TEXT PRIMARY KEY,
    agent_id               TEXT,
    agent_name             TEXT,
    phone_number_id        TEXT,
    phone_number           TEXT,
    from_number            TEXT,
    to_number              TEXT,
    direction              TEXT NOT NULL,
    status                 TEXT NOT NULL,
    transport              TEXT,
    gateway_call_id        TEXT,
    stream_id              TEXT,
    media_token_hash       TEXT UNIQUE,
    media_token_expires_at TEXT,
    started_at             TEXT,
    ended_at               TEXT,
    end_reason             TEXT,
    created_at             TEXT NOT NULL
);
CREATE INDEX calls_created_at ON calls (created_at);
CREATE INDEX calls_agent_id ON calls (agent_id, created_at);
CREATE INDEX calls_status ON calls (status);
