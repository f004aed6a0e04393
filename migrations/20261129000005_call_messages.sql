-- Text messages the agent sent during a call (the `send_message` tool), one row per message,
-- written when asked (status `queued`) and updated with the provider's answer.
CREATE TABLE call_messages (
    id           TEXT PRIMARY KEY,
    call_id      TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    to_number    TEXT NOT NULL,
    from_number  TEXT NOT NULL,
    body         TEXT NOT NULL,
    -- queued | sent | failed | not-configured
    status       TEXT NOT NULL,
    provider     TEXT,
    provider_id  TEXT,
    error        TEXT,
    created_at   TEXT NOT NULL
);

CREATE INDEX call_messages_call ON call_messages (call_id, created_at);
