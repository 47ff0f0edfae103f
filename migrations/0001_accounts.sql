-- Accounts, their encrypted credentials and refresh lease; the attempt history;
-- and the status-change outbox. Enumerations are TEXT with CHECK constraints so
-- that adding a value is a one-line migration, not an ALTER TYPE.

CREATE TABLE social_accounts (
    id                        TEXT PRIMARY KEY,
    workspace_id              TEXT NOT NULL,
    provider                  TEXT NOT NULL CHECK (provider IN (
                                  'X', 'LINKEDIN_PERSON', 'LINKEDIN_COMPANY', 'FACEBOOK_PAGE',
                                  'INSTAGRAM_FACEBOOK_LOGIN', 'INSTAGRAM_LOGIN', 'THREADS',
                                  'TIKTOK_BUSINESS', 'TIKTOK_PERSONAL', 'YOUTUBE', 'PINTEREST',
                                  'BLUESKY', 'MASTODON')),
    external_id               TEXT NOT NULL,
    handle                    TEXT,
    display_name              TEXT,
    avatar_url                TEXT,
    status                    TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN (
                                  'ACTIVE', 'TOKEN_EXPIRED', 'REVOKED', 'DISCONNECTED')),
    status_reason             TEXT,
    connection_type           TEXT NOT NULL DEFAULT 'oauth' CHECK (connection_type IN ('oauth', 'byok')),
    granted_scopes            TEXT[] NOT NULL DEFAULT '{}',
    meta                      JSONB NOT NULL DEFAULT '{}'::jsonb,
    default_board_id          TEXT,

    connected_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_refreshed_at         TIMESTAMPTZ,
    -- When the current access token was issued: the refresh window is a
    -- fraction of the issued lifetime, so the start of that lifetime is kept.
    token_issued_at           TIMESTAMPTZ,
    token_expires_at          TIMESTAMPTZ,
    refresh_token_expires_at  TIMESTAMPTZ,
    last_refresh_attempt_at   TIMESTAMPTZ,
    last_refresh_error        TEXT,
    last_refresh_error_status INTEGER,
    consecutive_failures      INTEGER NOT NULL DEFAULT 0,
    -- When the daemon should next touch the account (refresh due, retry due or
    -- health check due). NULL: nothing planned (token never expires).
    next_attempt_at           TIMESTAMPTZ,

    -- nonce || AES-256-GCM ciphertext; both values under credentials_key_id.
    access_token_ciphertext   BYTEA,
    refresh_token_ciphertext  BYTEA,
    credentials_key_id        TEXT,
    -- Bumped on every credentials change; refresh results are fenced on it.
    credentials_version       BIGINT NOT NULL DEFAULT 1,

    -- The refresh lease: at most one provider call per account at a time.
    lease_owner               TEXT,
    lease_until               TIMESTAMPTZ,
    lease_started_at          TIMESTAMPTZ,
    -- Start of a refresh whose lease expired without a result: the provider
    -- may have consumed the refresh token. Cleared by the next success.
    interrupted_refresh_at    TIMESTAMPTZ,

    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT social_accounts_identity UNIQUE (workspace_id, provider, external_id),
    CONSTRAINT social_accounts_lease_complete CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);

-- "Which accounts are due" is a range scan on this partial index.
CREATE INDEX social_accounts_due ON social_accounts (next_attempt_at)
    WHERE status = 'ACTIVE' AND next_attempt_at IS NOT NULL;
-- Key rotation and the start-up key check look rows up by key id.
CREATE INDEX social_accounts_key_id ON social_accounts (credentials_key_id)
    WHERE credentials_key_id IS NOT NULL;
CREATE INDEX social_accounts_workspace ON social_accounts (workspace_id, connected_at DESC);

CREATE TABLE refresh_attempts (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES social_accounts (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    trigger              TEXT NOT NULL CHECK (trigger IN (
                             'scheduled', 'forced', 'on_demand', 'health_check', 'retry')),
    started_at           TIMESTAMPTZ NOT NULL,
    finished_at          TIMESTAMPTZ NOT NULL,
    outcome              TEXT NOT NULL CHECK (outcome IN (
                             'refreshed', 'healthy', 'transient_error', 'rate_limited',
                             'rejected_expired', 'rejected_revoked', 'config_error', 'skipped')),
    http_status          INTEGER,
    provider_error_code  TEXT,
    message              TEXT,
    duration_ms          INTEGER NOT NULL
);
CREATE INDEX refresh_attempts_account ON refresh_attempts (account_id, id DESC);

-- The outbox: one row per status change, written in the transaction that
-- changed the status.
CREATE TABLE account_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    account_id   TEXT NOT NULL REFERENCES social_accounts (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    provider     TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    reason       TEXT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_events_account ON account_events (account_id, id DESC);
