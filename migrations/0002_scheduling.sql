-- Scheduler claims: a claimed account has a job outstanding in the queue.
-- Claiming also moves next_attempt_at to the claim's timeout, so the due scan
-- skips claimed rows by itself and a claim whose job was lost becomes due
-- again without a separate sweep.
ALTER TABLE social_accounts
    ADD COLUMN claim_id   UUID,
    ADD COLUMN claimed_at TIMESTAMPTZ,
    ADD COLUMN claimed_by TEXT;

-- Outstanding jobs (backpressure) are counted from this small index.
CREATE INDEX social_accounts_claimed ON social_accounts (claimed_at)
    WHERE claim_id IS NOT NULL;

-- The expiry sweep looks for ACTIVE accounts whose tokens ended by time.
CREATE INDEX social_accounts_token_expiry ON social_accounts (token_expires_at)
    WHERE status = 'ACTIVE';
CREATE INDEX social_accounts_refresh_token_expiry ON social_accounts (refresh_token_expires_at)
    WHERE status = 'ACTIVE' AND refresh_token_expires_at IS NOT NULL;
