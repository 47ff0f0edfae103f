-- Console sessions, so that signing out ends a session on the server: the
-- signed cookie names a row here, and a revoked or expired row is no
-- session whatever cookie is shown. Rows past their expiry are deleted at
-- the next sign-in.
CREATE TABLE console_sessions (
    id              TEXT PRIMARY KEY,
    operator_key_id TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
