-- Group commit: many settlements in one statement and one transaction, each exactly as billing_settle alone.
-- One array per argument of billing_settle; one row per item, numbered by `item` (1-based, the order given).
-- Every hold is locked first (its advisory lock, in key order; see billing_settle), then every account (by
-- user id), and only then is anything settled:
-- the order billing_settle takes for one hold, so a batch never waits in a cycle with a single settle, the
-- sweeper, another batch, a reserve or a grant. A statement error (an unknown hold, a charge over its hold)
-- rolls the batch back; the caller then runs the items one by one, so that item alone fails.
CREATE FUNCTION billing_settle_many(
    p_hold_ids uuid[], p_user_ids bigint[], p_outcomes text[], p_charges numeric[], p_result_jsons text[],
    p_request_ids text[], p_endpoints text[], p_methods text[], p_input_tokens integer[], p_output_tokens integer[],
    p_provider_costs numeric[], p_models text[], p_project_paths text[], p_error_messages text[],
    p_latencies_ms integer[]
) RETURNS TABLE (
    item integer, settled_outcome text, settled_charge numeric, account_user_id bigint, account_available numeric,
    account_held numeric, account_purchased numeric, account_unlimited boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    PERFORM pg_advisory_xact_lock(1178947400, k)
    FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest(p_hold_ids) AS id ORDER BY k) AS keys;
    PERFORM 1 FROM credit_accounts a WHERE a.user_id = ANY (p_user_ids) ORDER BY a.user_id FOR UPDATE;
    FOR i IN SELECT s.i FROM generate_subscripts(p_hold_ids, 1) AS s(i) ORDER BY s.i LOOP
        item := i;
        SELECT * INTO settled_outcome, settled_charge, account_user_id, account_available, account_held,
                      account_purchased, account_unlimited
        FROM billing_settle(p_hold_ids[i], p_user_ids[i], p_outcomes[i], p_charges[i], p_result_jsons[i],
                            p_request_ids[i], p_endpoints[i], p_methods[i], p_input_tokens[i], p_output_tokens[i],
                            p_provider_costs[i], p_models[i], p_project_paths[i], p_error_messages[i],
                            p_latencies_ms[i]);
        RETURN NEXT;
    END LOOP;
END
$$;
