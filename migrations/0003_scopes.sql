-- The publishing scopes an account lacks: the provider's configured
-- `publish_scopes` minus what the user granted. Kept in the row so the API
-- tier can say "reconnect to grant X" without knowing each platform's scopes.
ALTER TABLE social_accounts
    ADD COLUMN missing_scopes TEXT[] NOT NULL DEFAULT '{}';
