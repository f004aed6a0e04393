-- Webhook voice mode and call events (PROTOCOLS.md §1 "Webhooks").
-- agent_webhooks: at most one per agent (POST replaces it with a new id and secret).
-- webhook_deliveries: every attempt to reach a webhook — live turns (`agent.message`, one
-- attempt, never retried), tests (`agent.test`) and queued events (`agent.call_ended`, retried
-- with backoff by the delivery worker while `pending` and `next_retry_at` has passed).
-- `payload` is the exact JSON body sent (signed afresh at each attempt). Both tables go with
-- their agent: the agent delete removes them in its transaction; the cascade is a second guard.

CREATE TABLE agent_webhooks (
    id            TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL UNIQUE REFERENCES agents (id) ON DELETE CASCADE,
    url           TEXT NOT NULL,
    secret        TEXT NOT NULL,
    status        TEXT NOT NULL,
    context_limit BIGINT NOT NULL,
    timeout_s     BIGINT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    call_id         TEXT,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    http_status     BIGINT,
    attempt_count   BIGINT NOT NULL,
    last_attempt_at TEXT,
    next_retry_at   TEXT,
    error_message   TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_agent ON webhook_deliveries (agent_id, created_at);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_retry_at);
