-- What happened on a call, committed as it happens (not at hang-up).
-- call_transcripts: one row per caller turn (AgentPhone `transcripts`: caller text + the agent's
-- response, which the conversation fills in when it has answered).
-- call_events: the timeline (speech start/end, barge-ins, backchannels, reminders, hang-up …),
-- times in ms from the start of the call.

CREATE TABLE call_transcripts (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    transcript  TEXT NOT NULL,
    response    TEXT,
    source      TEXT NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (call_id, seq)
);

CREATE TABLE call_events (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    detail      TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (call_id, seq)
);
