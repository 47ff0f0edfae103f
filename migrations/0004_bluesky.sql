-- atproto OAuth sessions are DPoP-bound: each account keeps its own ES256
-- private key (a private JWK), encrypted like the tokens and under the same
-- credentials_key_id, so key rotation and refreshes re-encrypt it with them.
ALTER TABLE social_accounts ADD COLUMN dpop_key_ciphertext BYTEA;
