-- Every grant, one (BillingRepository.grant) or many in one statement and one transaction (the bulk import's
-- initial credits): a key already in the ledger answers its first grant (replayed, or key_conflict when that
-- grant was another user, amount, type or notes) and moves nothing; otherwise the account (created if
-- missing) moves by the amount (paying what it owes first; an adjustment may not overdraw: the CHECK) and one
-- ledger row records it with the key.
-- One array per grant field; one row per item, numbered by `item` (1-based, the order given). Accounts are
-- created, then all locked, in user order (as a settle batch locks them), before any key is looked up: a batch
-- racing another with the same keys (the same file imported twice at once) waits for it, then finds its
-- grants and replays them instead of failing on the ledger's unique key.
-- A statement error (an adjustment below zero) rolls the whole batch back; the caller then grants the items
-- one by one, so that item alone fails.
CREATE FUNCTION billing_grant_many(
    p_user_ids bigint[], p_amounts numeric[], p_types text[], p_purchases boolean[], p_keys text[],
    p_notes text[], p_created_by text[]
) RETURNS TABLE (item integer, transaction_id bigint, replayed boolean, key_conflict boolean)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    first_grant record;
    moved record;
BEGIN
    INSERT INTO credit_accounts (user_id)
    SELECT DISTINCT u FROM unnest(p_user_ids) AS u ORDER BY u
    ON CONFLICT (user_id) DO NOTHING;
    PERFORM 1 FROM credit_accounts a WHERE a.user_id = ANY (p_user_ids) ORDER BY a.user_id FOR UPDATE;
    FOR i IN SELECT s.i FROM generate_subscripts(p_user_ids, 1) AS s(i) ORDER BY p_user_ids[s.i], s.i LOOP
        item := i;
        SELECT t.id, t.user_id, t.transaction_type, t.credits_amount, COALESCE(t.notes, '') AS notes
        INTO first_grant
        FROM credit_transactions t WHERE t.idempotency_key = p_keys[i];
        IF FOUND THEN
            transaction_id := first_grant.id;
            replayed := true;
            key_conflict := (first_grant.user_id, first_grant.credits_amount, first_grant.transaction_type,
                             first_grant.notes)
                            IS DISTINCT FROM (p_user_ids[i], p_amounts[i], p_types[i], COALESCE(p_notes[i], ''));
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE credit_accounts a
        SET available = a.available + billing_credits(p_amounts[i]),
            total_credits_purchased = a.total_credits_purchased + CASE WHEN p_purchases[i] THEN p_amounts[i] ELSE 0 END,
            owed = least(a.owed, greatest(0, -(a.available + p_amounts[i]))),  -- credits in pay a debt first
            updated_at = now()
        WHERE a.user_id = p_user_ids[i]
        RETURNING a.available - p_amounts[i] AS before, a.available AS after INTO moved;
        INSERT INTO credit_transactions
            (user_id, transaction_type, credits_amount, balance_before, balance_after, idempotency_key, notes,
             created_by)
        VALUES (p_user_ids[i], p_types[i], p_amounts[i], moved.before, moved.after, p_keys[i],
                NULLIF(p_notes[i], ''), NULLIF(p_created_by[i], ''))
        RETURNING id INTO transaction_id;
        replayed := false;
        key_conflict := false;
        RETURN NEXT;
    END LOOP;
END
$$;
