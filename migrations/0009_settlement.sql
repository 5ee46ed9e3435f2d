-- Settlement as strict as TigerBeetle's two-phase transfers, and billing as the one owner of a metered
-- call's record: the hold is also the Idempotency-Key's record, in the same transaction as the money.
--
-- The functions that use these tables (billing_reserve, billing_settle and their batch forms) are kept,
-- one current definition per file, in migrations/functions/ and re-applied whenever they change.

-- A hold may carry the caller's Idempotency-Key (scoped to its user), the fingerprint of the request it
-- was placed for and its attempt number under that key. A key's record is its newest attempt: posted =
-- answer the stored result; pending = the call is still running; voided or expired = it charged nothing,
-- so a new attempt may place a new hold. Attempts of one key are placed under the account's row lock, and
-- the unique index makes "one newest attempt" a fact of the database. Holds stay immutable: these are
-- facts of the hold, written once.
ALTER TABLE credit_holds
    ADD COLUMN idempotency_key text,
    ADD COLUMN fingerprint bytea,
    ADD COLUMN key_attempt integer,
    ADD CONSTRAINT credit_holds_idempotency_key_length
        CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
    ADD CONSTRAINT credit_holds_key_parts
        CHECK ((idempotency_key IS NULL) = (fingerprint IS NULL) AND (idempotency_key IS NULL) = (key_attempt IS NULL)),
    -- What a resolution's foreign key points at, so the database ties each resolution to its hold's
    -- account and amount.
    ADD CONSTRAINT credit_holds_id_user_amount UNIQUE (id, user_id, amount);
CREATE UNIQUE INDEX credit_holds_idempotency_key_attempt ON credit_holds (user_id, idempotency_key, key_attempt)
    WHERE idempotency_key IS NOT NULL;

-- A resolution names its hold's account and pending amount, so CHECKs can tie its outcome to its amount:
-- voided and expired charge nothing, posted charges at most the hold.
ALTER TABLE credit_hold_resolutions
    ADD COLUMN user_id bigint,
    ADD COLUMN pending_amount numeric(18,4);
UPDATE credit_hold_resolutions r SET user_id = h.user_id, pending_amount = h.amount
FROM credit_holds h WHERE h.id = r.hold_id;
ALTER TABLE credit_hold_resolutions
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN pending_amount SET NOT NULL,
    ADD CONSTRAINT credit_hold_resolutions_hold_account_amount
        FOREIGN KEY (hold_id, user_id, pending_amount) REFERENCES credit_holds (id, user_id, amount),
    ADD CONSTRAINT credit_hold_resolutions_unposted_is_zero CHECK (outcome = 'posted' OR amount = 0),
    ADD CONSTRAINT credit_hold_resolutions_posted_within_hold CHECK (amount <= pending_amount);

-- The pending holds, kept by Reserve (insert) and settlement (delete) in their own transactions: the
-- sweeper drains it by deadline however far back a hold lies, without scanning every hold ever placed.
-- A cache of "holds without a resolution", like the cached balances; reconcile checks it.
CREATE TABLE pending_holds (
    hold_id    uuid        PRIMARY KEY REFERENCES credit_holds (id),
    user_id    bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_holds_expires_at_idx ON pending_holds (expires_at);
INSERT INTO pending_holds (hold_id, user_id, expires_at)
SELECT h.id, h.user_id, h.expires_at FROM credit_holds h
WHERE NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id);

-- The result a posted hold with an idempotency key paid for, written with the post: a retry with the key
-- answers it. Kept for BILLING_IDEMPOTENCY_RETENTION_HOURS, then purged (the key may then be reused).
CREATE TABLE idempotent_results (
    hold_id     uuid        PRIMARY KEY REFERENCES credit_holds (id),
    result_json text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotent_results_created_at_idx ON idempotent_results (created_at);

-- Hold ids voided before they were placed: a caller that lost a Reserve's answer voids its hold id, and a
-- Reserve that arrives after that places nothing. Purged after a day (a Reserve is answered in seconds).
CREATE TABLE voided_hold_ids (
    hold_id    uuid        PRIMARY KEY,
    user_id    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX voided_hold_ids_created_at_idx ON voided_hold_ids (created_at);

-- What billing publishes about its holds for the generation service: a staged result is part of a
-- project only once its hold is posted. Generation may read this view and nothing else of billing's.
CREATE VIEW hold_outcomes AS
SELECT hold_id, outcome FROM credit_hold_resolutions;
