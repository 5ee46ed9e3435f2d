-- Generation service: Idempotency-Key records for the metered calls (after the IETF
-- draft-ietf-httpapi-idempotency-key-header and Stripe's semantics).
--
-- One row per (user, key). An attempt claims the row as *pending* with its hold id for a lease; its
-- Execute marks it *executed* with the saved result (only if the row is still its own); the edge marks it
-- *completed* with the final response after billing committed. A retry then gets, by state:
-- completed → the stored response; executed → the result is settled again (Commit is idempotent by hold
-- id, so it is charged once) and answered; pending → 409 until the lease runs out, after which a new
-- attempt may take the row over (the old attempt can no longer mark it). A failed attempt deletes its
-- pending row, so a retry runs afresh (a failed call charges nothing).
CREATE TABLE idempotent_requests (
    user_id          bigint      NOT NULL,
    idempotency_key  text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint      bytea       NOT NULL,
    state            text        NOT NULL CHECK (state IN ('pending', 'executed', 'completed')),
    hold_id          uuid        NOT NULL,
    request_id       text        NOT NULL,
    max_cost         numeric(18,4) NOT NULL,
    lease_until      timestamptz NOT NULL,
    executed         bytea,        -- ExecuteResponse (protobuf) once executed
    response_status  integer,      -- the final response once completed
    response_body    text,
    response_headers jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
-- Records are kept for a retention window (GENERATION_IDEMPOTENCY_RETENTION_HOURS), then purged.
CREATE INDEX idempotent_requests_created_at_idx ON idempotent_requests (created_at);
