-- The connect flow: one row per started authorization, found by the hash
-- of its state (a leaked table completes nothing), consumed exactly once.
CREATE TABLE connect_sessions (
    state_hash      bytea PRIMARY KEY,
    provider        text NOT NULL,
    workspace_id    text NOT NULL,
    redirect_after  text NOT NULL,
    scopes          text[] NOT NULL,
    -- The account being reconnected, if any.
    account_id      text,
    extras          jsonb NOT NULL DEFAULT '{}',
    -- Non-secret facts the callback needs (an instance, an issuer).
    context         jsonb NOT NULL DEFAULT '{}',
    -- PKCE verifier, DPoP key, ...: encrypted, bound to the session.
    secrets         bytea,
    secrets_key_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz,
    -- Facebook Pages: the code was exchanged and the user has pages to
    -- choose from; the choice is the second, last use of the session.
    choice          jsonb,
    chosen_at       timestamptz
);

CREATE INDEX connect_sessions_expires ON connect_sessions (expires_at);

-- Apps the daemon registered itself on a user's server (Mastodon), reused
-- by every later user of that server.
CREATE TABLE connect_apps (
    provider              text NOT NULL,
    origin                text NOT NULL,
    redirect_uri          text NOT NULL,
    scopes                text NOT NULL,
    client_id             text NOT NULL,
    client_secret         bytea NOT NULL,
    client_secret_key_id  text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, origin, redirect_uri, scopes)
);
