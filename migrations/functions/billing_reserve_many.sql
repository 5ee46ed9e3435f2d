-- Group commit: many reserves in one statement and one transaction, each exactly as billing_reserve alone.
-- One array per argument of billing_reserve (then the shared ones); one row per item that has an account,
-- numbered by `item` (1-based, the order given). Items run in user order, so two batches lock accounts in
-- the same order. A statement error (a hold id reused) rolls the whole batch back; the caller then runs the
-- items one by one, so one bad item fails nothing else.
CREATE FUNCTION billing_reserve_many(
    p_hold_ids uuid[], p_user_ids bigint[], p_amounts numeric[], p_ttl_seconds double precision[],
    p_endpoints text[], p_request_ids text[], p_idempotency_keys text[], p_fingerprints bytea[],
    p_key_retention_hours integer, p_default_rpm integer, p_default_concurrent integer
) RETURNS TABLE (item integer, reason text, available numeric, unlimited boolean, retry_after integer,
                 key_hold_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN SELECT s.i FROM generate_subscripts(p_user_ids, 1) AS s(i) ORDER BY p_user_ids[s.i], s.i LOOP
        item := i;
        FOR reason, available, unlimited, retry_after, key_hold_id IN
            SELECT * FROM billing_reserve(p_hold_ids[i], p_user_ids[i], p_amounts[i], p_ttl_seconds[i],
                                          p_endpoints[i], p_request_ids[i], p_idempotency_keys[i], p_fingerprints[i],
                                          p_key_retention_hours, p_default_rpm, p_default_concurrent)
        LOOP
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
