-- A refresh's result write becomes a heap-only (HOT) update of the wide
-- account row: no column it changes may be indexed. It changes both token
-- expiries, so their two indexes move off `social_accounts` and their
-- readers (the expiry sweep, the console's expiring and reconnect lists)
-- read copies on the narrow schedule row instead, which every refresh
-- rewrites anyway. With 0008's fillfactor headroom, the result write then
-- touches none of the wide row's five indexes.
--
-- Both copies are NULL unless the account is ACTIVE, as `next_attempt_at`.
--   access_expires_at: `token_expires_at`.
--   dead_at: when the credentials die by time unless replaced
--     (`RefreshPolicy::dead_at`): the refresh token's expiry, or the access
--     token's where nothing can renew an expired one.
-- Every writer of credentials or status sets them in the statement that
-- writes the account. `dead_at` depends on the setting
-- `refreshable_after_expiry`; the backfill below uses the shipped platform
-- defaults. Under another setting, or after the setting changes, the sweep
-- re-checks each account row before it acts and puts right a `dead_at`
-- that came too early; one that comes too late waits for the account's
-- next credentials write (its next refresh), and meanwhile that refresh
-- meets the platform's own refusal.
ALTER TABLE account_schedule
    ADD COLUMN access_expires_at TIMESTAMPTZ,
    ADD COLUMN dead_at           TIMESTAMPTZ;

UPDATE account_schedule s
SET access_expires_at = a.token_expires_at,
    dead_at = LEAST(
        a.refresh_token_expires_at,
        CASE WHEN a.refresh_token_ciphertext IS NULL
                  OR a.provider IN ('INSTAGRAM_LOGIN', 'THREADS', 'FACEBOOK_PAGE',
                                    'INSTAGRAM_FACEBOOK_LOGIN')
             THEN a.token_expires_at END)
FROM social_accounts a
WHERE a.id = s.account_id AND a.status = 'ACTIVE';

CREATE INDEX account_schedule_dead ON account_schedule (dead_at)
    WHERE dead_at IS NOT NULL;
CREATE INDEX account_schedule_access_expiry ON account_schedule (access_expires_at)
    WHERE access_expires_at IS NOT NULL;

DROP INDEX social_accounts_token_expiry;
DROP INDEX social_accounts_refresh_token_expiry;

ANALYZE account_schedule;
