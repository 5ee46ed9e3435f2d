-- Resolve a pending hold (post, void or expire) in one round trip, with TigerBeetle's rules:
--   * a post charges at most the hold (FB002 exceeds_pending_amount) and names the hold's account (FB003);
--   * a voided or expired resolution charges nothing (FB005 otherwise; a CHECK says it again);
--   * a hold past its deadline can no longer be posted or voided: it expires now (outcome `expired`);
--   * a hold resolved before answers what happened first: already_posted (the same amount),
--     exists_with_different_amount (a post of another amount: `settled_charge` is the first one),
--     already_voided or already_expired;
--   * voiding a hold id that was never placed remembers it (voided_hold_ids) under the account's lock, so a
--     Reserve that arrives later places nothing; posting one raises FB001 hold_not_found.
-- A post of a hold with an idempotency key keeps the result (p_result_json) for replays.
--
-- Lock order, as everywhere in billing: holds first, then account rows (billing_settle_many locks all its
-- holds, then all its accounts by user id, before settling any). Reserves and grants lock only an account
-- row, so nothing waits in a cycle. A hold is locked with a transaction advisory lock on its id (class
-- 1178947400, "FSGH") rather than FOR UPDATE: a row lock needs UPDATE privilege, and billing's role may not
-- update holds (migrations/0011_service_roles.sql).
CREATE FUNCTION billing_settle(
    p_hold_id uuid, p_user_id bigint, p_outcome text, p_charge numeric, p_result_json text, p_request_id text,
    p_endpoint text, p_method text, p_input_tokens integer, p_output_tokens integer, p_provider_cost numeric,
    p_model text, p_project_path text, p_error_message text, p_latency_ms integer
) RETURNS TABLE (
    settled_outcome text, settled_charge numeric, account_user_id bigint, account_available numeric,
    account_held numeric, account_purchased numeric, account_unlimited boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    charge numeric := billing_credits(p_charge);
    provider_cost numeric := billing_credits(COALESCE(p_provider_cost, 0));
    outcome text := p_outcome;
    error_message text := p_error_message;
    h credit_holds%ROWTYPE;
    acct credit_accounts%ROWTYPE;
    first_outcome text;
    first_amount numeric;
    before_settle numeric;
    after_release numeric;
BEGIN
    IF outcome IS NULL OR outcome NOT IN ('posted', 'voided', 'expired') THEN
        RAISE EXCEPTION 'unknown settlement outcome %', outcome USING ERRCODE = 'FB005';
    END IF;
    IF charge < 0 OR provider_cost < 0 OR (outcome <> 'posted' AND charge <> 0) THEN
        RAISE EXCEPTION 'a % hold cannot charge %', outcome, charge USING ERRCODE = 'FB005';
    END IF;

    PERFORM pg_advisory_xact_lock(1178947400, hashtext(p_hold_id::text));
    SELECT * INTO h FROM credit_holds WHERE id = p_hold_id;
    IF NOT FOUND THEN
        IF outcome <> 'voided' THEN
            RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'FB001';
        END IF;
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = p_user_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'FB001';
        END IF;
        IF EXISTS (SELECT 1 FROM credit_holds WHERE id = p_hold_id) THEN
            -- Placed while we waited for the account: settle it from the top (the hold lock comes first).
            RAISE EXCEPTION 'hold % appeared; retry', p_hold_id USING ERRCODE = '40001';
        END IF;
        INSERT INTO voided_hold_ids (hold_id, user_id) VALUES (p_hold_id, p_user_id) ON CONFLICT DO NOTHING;
        RETURN QUERY SELECT 'voided'::text, 0::numeric, acct.user_id, acct.available, acct.held,
                            acct.total_credits_purchased, acct.unlimited;
        RETURN;
    END IF;
    IF h.user_id <> p_user_id THEN
        RAISE EXCEPTION 'hold % belongs to another account', p_hold_id USING ERRCODE = 'FB003';
    END IF;

    SELECT r.outcome, r.amount INTO first_outcome, first_amount
    FROM credit_hold_resolutions r WHERE r.hold_id = p_hold_id;
    IF first_outcome IS NOT NULL THEN
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = h.user_id;
        RETURN QUERY SELECT
            CASE first_outcome
                WHEN 'posted' THEN CASE WHEN outcome = 'posted' AND charge <> first_amount
                                        THEN 'exists_with_different_amount' ELSE 'already_posted' END
                WHEN 'voided' THEN 'already_voided'
                ELSE 'already_expired' END,
            first_amount, acct.user_id, acct.available, acct.held, acct.total_credits_purchased, acct.unlimited;
        RETURN;
    END IF;

    IF outcome = 'posted' AND charge > h.amount THEN
        RAISE EXCEPTION 'charge % exceeds the pending amount %', charge, h.amount USING ERRCODE = 'FB002';
    END IF;
    IF outcome <> 'expired' AND clock_timestamp() >= h.expires_at THEN
        outcome := 'expired';
        charge := 0;
        error_message := 'hold expired before the call was settled';
    END IF;

    UPDATE credit_accounts a
    SET held = a.held - h.amount, available = a.available + h.amount - charge,
        owed = least(a.owed, greatest(0, -(a.available + h.amount - charge))),  -- a release pays a debt first
        holds_open = a.holds_open - 1, updated_at = now()
    WHERE a.user_id = h.user_id
    RETURNING * INTO acct;
    before_settle := acct.available - h.amount + charge;
    after_release := before_settle + h.amount;

    INSERT INTO credit_hold_resolutions (hold_id, user_id, pending_amount, outcome, amount)
    VALUES (p_hold_id, h.user_id, h.amount, outcome, charge);
    DELETE FROM pending_holds WHERE hold_id = p_hold_id;
    INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after, hold_id)
    VALUES (h.user_id, 'release', h.amount, before_settle, after_release, p_hold_id);
    IF charge > 0 THEN
        INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after,
                                         hold_id)
        VALUES (h.user_id, 'usage', -charge, after_release, acct.available, p_hold_id);
    END IF;
    INSERT INTO usage_logs
        (user_id, request_id, hold_id, endpoint, method, input_tokens, output_tokens, tokens_used, credits_cost,
         provider_cost, model_used, project_path, response_success, error_message, latency_ms)
    VALUES
        (h.user_id, COALESCE(NULLIF(p_request_id, ''), h.request_id), p_hold_id,
         COALESCE(NULLIF(p_endpoint, ''), h.endpoint), COALESCE(NULLIF(p_method, ''), 'POST'),
         COALESCE(p_input_tokens, 0), COALESCE(p_output_tokens, 0),
         COALESCE(p_input_tokens, 0) + COALESCE(p_output_tokens, 0), charge, provider_cost,
         NULLIF(p_model, ''), NULLIF(p_project_path, ''), outcome = 'posted',
         CASE WHEN outcome = 'posted' THEN NULL ELSE COALESCE(NULLIF(error_message, ''), outcome) END,
         p_latency_ms);
    IF outcome = 'posted' AND h.idempotency_key IS NOT NULL AND p_result_json IS NOT NULL THEN
        INSERT INTO idempotent_results (hold_id, result_json) VALUES (p_hold_id, p_result_json);
    END IF;

    RETURN QUERY SELECT outcome, charge, acct.user_id, acct.available, acct.held, acct.total_credits_purchased,
                        acct.unlimited;
END
$$;
