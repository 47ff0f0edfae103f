-- Why the refresh recorded in interrupted_refresh_at may have consumed the
-- refresh token: a lease that expired without a result, a request that
-- timed out or lost its connection after it was sent, a refresh that
-- stopped on an internal error. Shown with a later rejection.
ALTER TABLE social_accounts ADD COLUMN interrupted_refresh_cause TEXT;
