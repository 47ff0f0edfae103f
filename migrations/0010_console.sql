-- The operator console.

-- Operator actions go to the outbox as events of kind `operator_action`,
-- naming the operator key's id (never the key); NULL on every other event.
ALTER TABLE account_events ADD COLUMN operator_key_id TEXT;

-- Each worker's circuit breakers, reported every few seconds, so that the
-- console (served by the `api` role, perhaps in another process) can show
-- them. One row per platform and worker process.
CREATE TABLE provider_gate_states (
    provider     TEXT NOT NULL,
    instance     TEXT NOT NULL,
    paused_until TIMESTAMPTZ,
    pause_reason TEXT,
    config_error BOOLEAN NOT NULL DEFAULT false,
    reported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, instance)
);

-- An operator's request to resume a paused platform; workers apply the
-- newest on their next report. Also the audit of who asked and when.
CREATE TABLE provider_resumes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        TEXT NOT NULL,
    operator_key_id TEXT NOT NULL,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX provider_resumes_provider ON provider_resumes (provider, id DESC);

-- The console's rates over the last hour and error classes over the last
-- day read attempts by time.
CREATE INDEX refresh_attempts_finished ON refresh_attempts (finished_at);
