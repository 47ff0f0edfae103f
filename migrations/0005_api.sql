-- Events for pull consumers and webhook delivery.
--
-- `seq` is the order consumers read events in. It is assigned after commit by
-- one assigner at a time (see store::events::assign_sequence), so a reader
-- that has seen seq N can never later find a committed event below N: the
-- identity `id` cannot promise that, because transactions commit out of order.
ALTER TABLE account_events
    ADD COLUMN seq                 BIGINT UNIQUE,
    ADD COLUMN delivered_at        TIMESTAMPTZ,
    ADD COLUMN delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    -- Also the delivery lease: a sender moves it past its timeout first.
    ADD COLUMN next_delivery_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN last_delivery_error TEXT;

CREATE SEQUENCE account_events_seq;

CREATE INDEX account_events_unsequenced ON account_events (id) WHERE seq IS NULL;
CREATE INDEX account_events_undelivered ON account_events (next_delivery_at)
    WHERE delivered_at IS NULL AND seq IS NOT NULL;

-- The API lists accounts newest connected first, with keyset pagination.
CREATE INDEX social_accounts_listing ON social_accounts (connected_at DESC, id DESC);
