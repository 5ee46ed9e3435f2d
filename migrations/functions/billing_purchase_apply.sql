-- Apply one verified Stripe event to its purchase, once, in one transaction:
--   1. record the event id (stripe_events); if it is already there, this delivery is a repeat: do nothing;
--   2. add what the event says to the purchase's facts (each only grows: paid, refunded, a dispute's status);
--   3. move the difference between what the purchase should have credited (billing_purchase_target) and
--      what it has credited: a `purchase` ledger row when it is more, a `clawback` row when it is less. A
--      clawback takes the credits back even when they were spent; the balance then goes below zero and the
--      account owes that much (`owed`: only a clawback sets it; billing_reserve refuses metered calls
--      until credits come in and pay it).
-- Arguments left NULL carry no news. p_paid_amount with p_currency: what Stripe took; p_refunded_amount: the
-- charge's amount_refunded (cumulative); p_dispute_*: one dispute's id, amount and status (open|won|lost).
-- A paid amount or currency other than the pack's marks the purchase `mismatch` and credits nothing; an event
-- of another PaymentIntent than the purchase's changes nothing and is kept as a `conflict`.
-- Lock order: the event id (its unique index), the purchase row, then the account row; nothing takes them in
-- another order (holds are not involved).
CREATE FUNCTION billing_purchase_apply(
    p_purchase_id uuid, p_event_id text, p_event_type text, p_object_id text, p_payment_intent_id text,
    p_paid_amount bigint, p_currency text, p_refunded_amount bigint, p_dispute_id text, p_dispute_amount bigint,
    p_dispute_status text, p_failure_message text
) RETURNS TABLE (duplicate boolean, state text, moved numeric, credited numeric, available numeric)
LANGUAGE plpgsql AS $$
DECLARE
    p purchases%ROWTYPE;
    target numeric;
    delta numeric;
    acct credit_accounts%ROWTYPE;
    news text;
BEGIN
    INSERT INTO stripe_events (id, type, object_id, purchase_id, outcome)
    VALUES (p_event_id, p_event_type, p_object_id, p_purchase_id, 'applied')
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO p FROM purchases WHERE id = p_purchase_id;
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = p.user_id;
        RETURN QUERY SELECT true, p.state, 0::numeric, p.credited, acct.available;
        RETURN;
    END IF;

    SELECT * INTO p FROM purchases WHERE id = p_purchase_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'purchase % not found', p_purchase_id USING ERRCODE = 'FB007';
    END IF;

    IF p_payment_intent_id IS NOT NULL AND p.payment_intent_id <> p_payment_intent_id THEN
        -- Another PaymentIntent names this purchase (a second one created for it): its money is not this
        -- purchase's, so nothing changes here; the event is kept as a `conflict` for an operator (reconcile).
        UPDATE stripe_events SET outcome = 'conflict' WHERE id = p_event_id;
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = p.user_id;
        RETURN QUERY SELECT false, p.state, 0::numeric, p.credited, acct.available;
        RETURN;
    END IF;
    p.payment_intent_id := COALESCE(p.payment_intent_id, p_payment_intent_id);
    IF p_paid_amount IS NOT NULL AND p_paid_amount > 0 THEN
        IF p_paid_amount <> p.amount OR lower(p_currency) IS DISTINCT FROM p.currency THEN
            news := format('paid %s %s for a pack of %s %s', p_paid_amount, lower(p_currency), p.amount, p.currency);
        END IF;
        IF news IS NULL THEN
            p.paid_amount := greatest(p.paid_amount, p_paid_amount);
        END IF;
    END IF;
    p.mismatch := COALESCE(p.mismatch, news);
    p.refunded_amount := greatest(p.refunded_amount, COALESCE(p_refunded_amount, 0));
    IF p_dispute_id IS NOT NULL THEN
        INSERT INTO purchase_disputes AS d (dispute_id, purchase_id, amount, status)
        VALUES (p_dispute_id, p_purchase_id, p_dispute_amount, p_dispute_status)
        ON CONFLICT (dispute_id) DO UPDATE
        SET status = EXCLUDED.status, amount = EXCLUDED.amount, updated_at = now()
        WHERE d.status = 'open';  -- open → won | lost; a closed dispute stays closed
        SELECT COALESCE(sum(d.amount), 0) INTO p.disputed_amount
        FROM purchase_disputes d WHERE d.purchase_id = p_purchase_id AND d.status <> 'won';
    END IF;
    IF p_failure_message IS NOT NULL THEN
        p.failure_message := p_failure_message;
    END IF;

    target := billing_purchase_target(p.credits, p.amount, p.paid_amount, p.refunded_amount, p.disputed_amount,
                                      p.mismatch);
    delta := target - p.credited;
    IF delta <> 0 THEN
        UPDATE credit_accounts a
        SET available = a.available + delta, total_credits_purchased = a.total_credits_purchased + delta,
            owed = CASE WHEN a.unlimited THEN 0 ELSE greatest(0, -(a.available + delta)) END, updated_at = now()
        WHERE a.user_id = p.user_id
        RETURNING * INTO acct;
        INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after,
                                         notes, created_by, purchase_id, stripe_event_id)
        VALUES (p.user_id, CASE WHEN delta > 0 THEN 'purchase' ELSE 'clawback' END, delta,
                acct.available - delta, acct.available,
                format('%s %s (%s)', p.pack_id, COALESCE(p.payment_intent_id, ''), p_event_type), 'stripe',
                p_purchase_id, p_event_id);
    ELSE
        SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = p.user_id;
    END IF;

    UPDATE purchases SET
        payment_intent_id = p.payment_intent_id, paid_amount = p.paid_amount,
        refunded_amount = p.refunded_amount, disputed_amount = p.disputed_amount,
        failure_message = p.failure_message, mismatch = p.mismatch, credited = target,
        state = CASE
            WHEN p.mismatch IS NOT NULL THEN 'mismatch'
            WHEN p.disputed_amount > 0 THEN 'disputed'
            WHEN p.paid_amount > 0 AND p.refunded_amount >= p.amount THEN 'refunded'
            WHEN p.paid_amount > 0 AND p.refunded_amount > 0 THEN 'partially_refunded'
            WHEN p.paid_amount > 0 THEN 'succeeded'
            WHEN p.failure_message IS NOT NULL THEN 'failed'
            ELSE 'pending' END,
        updated_at = now()
    WHERE id = p_purchase_id
    RETURNING * INTO p;
    RETURN QUERY SELECT false, p.state, delta, p.credited, acct.available;
END
$$;
