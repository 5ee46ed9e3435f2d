-- Group commit for billing: the Reserve and Commit calls that reach billing together
-- run as one statement and one transaction, each item exactly as its single statement would.
--
-- billing_reserve is the Reserve statement of services/billing/queries.py as a function; billing_reserve_many
-- and billing_settle_many take one array per argument and answer one row per item, numbered by `item`
-- (1-based, the order given). Items run in user order, so two batches lock accounts in the same order.
-- A statement error (a hold id used twice, a failed settle) rolls the whole batch back; the caller then runs
-- the items one by one through the single statements, so one bad item fails nothing else.

CREATE OR REPLACE FUNCTION billing_reserve(
    p_hold_id uuid, p_user_id bigint, p_amount numeric, p_ttl_seconds double precision, p_endpoint text,
    p_request_id text, p_default_rpm integer, p_default_concurrent integer
) RETURNS TABLE (reason text, available numeric, unlimited boolean, retry_after integer)
LANGUAGE sql AS $$
WITH locked AS (
    SELECT a.user_id, a.available, a.held, a.unlimited, a.holds_open, a.rate_tat,
           COALESCE(a.requests_per_minute, p_default_rpm) AS rpm,
           COALESCE(a.max_concurrent, p_default_concurrent) AS concurrent
    FROM credit_accounts a WHERE a.user_id = p_user_id
    FOR UPDATE
), clocked AS (
    SELECT l.*, clock_timestamp() AS at,
           CASE WHEN l.rpm > 0 THEN (60000000 / l.rpm) * interval '1 microsecond' END AS emission
    FROM locked l
), verdict AS (
    SELECT c.*,
           greatest(c.rate_tat, c.at) + c.emission AS next_tat,
           CASE WHEN c.unlimited THEN 'ok'
                WHEN c.available < p_amount THEN 'insufficient_credits'
                WHEN c.concurrent > 0 AND c.holds_open >= c.concurrent THEN 'max_concurrent'
                WHEN c.rpm > 0 AND greatest(c.rate_tat, c.at) + c.emission - c.at > interval '60 seconds'
                    THEN 'requests_per_minute'
                ELSE 'ok' END AS reason
    FROM clocked c
), acct AS (
    UPDATE credit_accounts a
    SET available = v.available - p_amount, held = v.held + p_amount, holds_open = v.holds_open + 1,
        rate_tat = CASE WHEN v.unlimited OR v.rpm = 0 THEN v.rate_tat ELSE v.next_tat END,
        updated_at = now()
    FROM verdict v
    WHERE a.user_id = v.user_id AND v.reason = 'ok'
    RETURNING a.available, a.unlimited
), hold AS (
    INSERT INTO credit_holds (id, user_id, amount, endpoint, request_id, expires_at)
    SELECT p_hold_id, p_user_id, p_amount, p_endpoint, p_request_id, now() + make_interval(secs => p_ttl_seconds)
    FROM acct
    RETURNING id
), ledger AS (
    INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after, hold_id)
    SELECT p_user_id, 'hold', -p_amount, acct.available + p_amount, acct.available, hold.id FROM acct, hold
)
SELECT v.reason, COALESCE(acct.available, v.available), v.unlimited,
       CASE v.reason
           WHEN 'max_concurrent' THEN 1
           WHEN 'requests_per_minute' THEN greatest(1, ceil(extract(epoch FROM
               v.next_tat - v.at - interval '60 seconds')))::integer
           ELSE 0 END
FROM verdict v LEFT JOIN acct ON true
$$;

CREATE OR REPLACE FUNCTION billing_reserve_many(
    p_hold_ids uuid[], p_user_ids bigint[], p_amounts numeric[], p_ttl_seconds double precision[],
    p_endpoints text[], p_request_ids text[], p_default_rpm integer, p_default_concurrent integer
) RETURNS TABLE (item integer, reason text, available numeric, unlimited boolean, retry_after integer)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN SELECT s.i FROM generate_subscripts(p_user_ids, 1) AS s(i) ORDER BY p_user_ids[s.i], s.i LOOP
        item := i;
        -- No account at all answers no row, as the single statement does.
        FOR reason, available, unlimited, retry_after IN
            SELECT * FROM billing_reserve(p_hold_ids[i], p_user_ids[i], p_amounts[i], p_ttl_seconds[i],
                                          p_endpoints[i], p_request_ids[i], p_default_rpm, p_default_concurrent)
        LOOP
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION billing_settle_many(
    p_hold_ids uuid[], p_outcomes text[], p_charges numeric[], p_request_ids text[], p_endpoints text[],
    p_methods text[], p_input_tokens integer[], p_output_tokens integer[], p_provider_costs numeric[],
    p_models text[], p_project_paths text[], p_error_messages text[], p_latencies_ms integer[]
) RETURNS TABLE (
    item integer, settled_outcome text, settled_charge numeric, account_user_id bigint, account_available numeric,
    account_held numeric, account_purchased numeric, account_unlimited boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    -- In user order, as billing_reserve_many locks accounts; each item locks its hold, then its account,
    -- as billing_settle alone does.
    FOR i IN SELECT s.i FROM generate_subscripts(p_hold_ids, 1) AS s(i)
             ORDER BY (SELECT h.user_id FROM credit_holds h WHERE h.id = p_hold_ids[s.i]), s.i LOOP
        item := i;
        SELECT * INTO settled_outcome, settled_charge, account_user_id, account_available, account_held,
                      account_purchased, account_unlimited
        FROM billing_settle(p_hold_ids[i], p_outcomes[i], p_charges[i], p_request_ids[i], p_endpoints[i],
                            p_methods[i], p_input_tokens[i], p_output_tokens[i], p_provider_costs[i], p_models[i],
                            p_project_paths[i], p_error_messages[i], p_latencies_ms[i]);
        RETURN NEXT;
    END LOOP;
END
$$;
