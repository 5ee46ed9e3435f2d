-- Per-user rate limits, enforced by billing's Reserve under the account row lock so
-- that every edge and billing replica sharing this database sees one exact count.
--
--   requests_per_minute  NULL = the service default (BILLING_DEFAULT_REQUESTS_PER_MINUTE), 0 = no limit;
--                        a GCRA (generic cell rate algorithm) with a burst of one minute's worth of calls
--   max_concurrent       NULL = the service default (BILLING_DEFAULT_MAX_CONCURRENT), 0 = no limit;
--                        pending holds allowed at once
--   holds_open           pending holds, kept by Reserve (+1) and billing_settle (-1); reconcile checks it
--   rate_tat             the GCRA's theoretical arrival time; NULL = never limited yet
-- Unlimited (admin) accounts are exempt from both limits but still count their holds.
ALTER TABLE credit_accounts
    ADD COLUMN requests_per_minute integer NULL
        CONSTRAINT credit_accounts_requests_per_minute_nonnegative CHECK (requests_per_minute >= 0),
    ADD COLUMN max_concurrent integer NULL
        CONSTRAINT credit_accounts_max_concurrent_nonnegative CHECK (max_concurrent >= 0),
    ADD COLUMN holds_open integer NOT NULL DEFAULT 0
        CONSTRAINT credit_accounts_holds_open_nonnegative CHECK (holds_open >= 0),
    ADD COLUMN rate_tat timestamptz NULL;

-- The ALTER above holds the table's exclusive lock until this migration commits, so no hold is placed
-- or settled between this count and the new columns going live.
UPDATE credit_accounts a
SET holds_open = p.pending
FROM (
    SELECT h.user_id, count(*) AS pending
    FROM credit_holds h
    WHERE NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)
    GROUP BY h.user_id
) p
WHERE p.user_id = a.user_id;

-- billing_settle as in 0005, and it now also closes the hold's slot (holds_open - 1) in the same
-- UPDATE of the account row, so the concurrency count can never drift from the pending holds.
CREATE OR REPLACE FUNCTION billing_settle(
    p_hold_id uuid,
    p_outcome text,
    p_charge numeric,
    p_request_id text,
    p_endpoint text,
    p_method text,
    p_input_tokens integer,
    p_output_tokens integer,
    p_provider_cost numeric,
    p_model text,
    p_project_path text,
    p_error_message text,
    p_latency_ms integer
) RETURNS TABLE (
    settled_outcome text,
    settled_charge numeric,
    account_user_id bigint,
    account_available numeric,
    account_held numeric,
    account_purchased numeric,
    account_unlimited boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    h credit_holds%ROWTYPE;
    acct credit_accounts%ROWTYPE;
    previous_outcome text;
    previous_amount numeric;
    before_settle numeric;
    after_release numeric;
BEGIN
    SELECT * INTO h FROM credit_holds WHERE id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'hold_not_found';
    END IF;

    SELECT r.outcome, r.amount INTO previous_outcome, previous_amount
    FROM credit_hold_resolutions r WHERE r.hold_id = p_hold_id;
    IF previous_outcome IS NOT NULL THEN
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = h.user_id;
        RETURN QUERY SELECT
            CASE previous_outcome WHEN 'posted' THEN 'already_posted'
                                  WHEN 'voided' THEN 'already_voided'
                                  ELSE 'expired' END,
            previous_amount, acct.user_id, acct.available, acct.held, acct.total_credits_purchased, acct.unlimited;
        RETURN;
    END IF;

    IF p_charge > h.amount THEN
        RAISE EXCEPTION 'exceeds_pending_amount';
    END IF;

    UPDATE credit_accounts a
    SET held = a.held - h.amount, available = a.available + h.amount - p_charge,
        holds_open = a.holds_open - 1, updated_at = now()
    WHERE a.user_id = h.user_id
    RETURNING * INTO acct;
    before_settle := acct.available - h.amount + p_charge;
    after_release := before_settle + h.amount;

    INSERT INTO credit_hold_resolutions (hold_id, outcome, amount) VALUES (p_hold_id, p_outcome, p_charge);
    INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after, hold_id)
    VALUES (h.user_id, 'release', h.amount, before_settle, after_release, p_hold_id);
    IF p_charge > 0 THEN
        INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after,
                                         hold_id)
        VALUES (h.user_id, 'usage', -p_charge, after_release, acct.available, p_hold_id);
    END IF;

    INSERT INTO usage_logs
        (user_id, request_id, hold_id, endpoint, method, input_tokens, output_tokens, tokens_used, credits_cost,
         provider_cost, model_used, project_path, response_success, error_message, latency_ms)
    VALUES
        (h.user_id, COALESCE(NULLIF(p_request_id, ''), h.request_id), p_hold_id,
         COALESCE(NULLIF(p_endpoint, ''), h.endpoint), COALESCE(NULLIF(p_method, ''), 'POST'),
         p_input_tokens, p_output_tokens, p_input_tokens + p_output_tokens, p_charge, p_provider_cost,
         NULLIF(p_model, ''), NULLIF(p_project_path, ''), p_outcome = 'posted',
         CASE WHEN p_outcome = 'posted' THEN NULL ELSE COALESCE(NULLIF(p_error_message, ''), p_outcome) END,
         p_latency_ms);

    RETURN QUERY SELECT p_outcome, p_charge, acct.user_id, acct.available, acct.held,
                        acct.total_credits_purchased, acct.unlimited;
END
$$;
