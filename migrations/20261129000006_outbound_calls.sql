-- Outbound calls (POST /v1/calls) and recordings: what the caller of the API asked for this
-- one call. `overrides` is a JSON object {initialGreeting, systemPrompt, variables, modelTier}
-- applied over the agent's settings when the call's media stream starts.
ALTER TABLE calls ADD COLUMN disable_recording BIGINT NOT NULL DEFAULT 0; -- 0/1 (see foundation)
ALTER TABLE calls ADD COLUMN overrides TEXT;
CREATE INDEX calls_gateway_call_id ON calls (gateway_call_id);
