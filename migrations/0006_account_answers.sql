-- What the platform says about the account itself, apart from its token
-- (Bluesky `active: false`, a Mastodon login disabled by its instance): the
-- account stays ACTIVE (the user can reactivate) but cannot post. NULL: the
-- platform reports the account active, or has not said otherwise.
ALTER TABLE social_accounts
    ADD COLUMN account_inactive_reason TEXT,
    ADD COLUMN account_inactive_since  TIMESTAMPTZ,
    -- The latest answer was one no row of the platform's table describes
    -- (docs/platform-answers.md): recorded verbatim in last_refresh_error.
    ADD COLUMN unrecognised_answer     BOOLEAN NOT NULL DEFAULT false;

-- Events are status changes ('status') or changes of the account's own
-- state ('account_inactive', 'account_active'), whose status stays the same.
ALTER TABLE account_events
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'status';
