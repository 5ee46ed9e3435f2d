-- Place a pending hold, in one round trip: lock the account row, decide, and only if the verdict is `ok`
-- move available → held, count the hold in `holds_open`, advance the rate limiter, and record the hold, its
-- pending row and its ledger row. Deciding on the *locked* row (the newest version, which nobody else can
-- change until this commits) makes every check exact across replicas: reserves for one user queue on it.
--
-- Answers one row (no row: no account, i.e. insufficient credits), `reason` one of
--   ok                    placed (or this hold id was placed before with the same user and amount: a retry)
--   hold_voided           this hold id was voided before it arrived (its caller lost the answer and gave up)
--   key_replay            the idempotency key's newest attempt was posted: `key_hold_id` is that hold
--   key_in_progress       the key's newest attempt is still pending
--   key_mismatch          the key was used for a request with another fingerprint
--   insufficient_credits, max_concurrent, requests_per_minute   (checked in this order: a call that could
--                         never be paid for is told so, and a refused call takes no rate token)
-- Unlimited accounts are exempt from the balance and both limits but still count their holds.
--
-- requests_per_minute is a GCRA with a burst of one minute's worth: T = 60 s / rpm (floored to whole
-- microseconds so that exactly rpm fit in a burst); allowed iff max(tat, now) + T - now <= 60 s, and then
-- tat := max(tat, now) + T. The clock is read after the lock is granted (clock_timestamp()), so a reserve
-- that queued on the lock is judged at the moment it decides.
--
-- An idempotency key's attempts are numbered (key_attempt) and its newest decides (billing_key_state): a
-- voided or expired attempt charged nothing, so the next one may run; records older than
-- p_key_retention_hours are forgotten.
-- Raises FB004 (amount) and FB006 (a hold id reused for another user or amount).
CREATE FUNCTION billing_reserve(
    p_hold_id uuid, p_user_id bigint, p_amount numeric, p_ttl_seconds double precision, p_endpoint text,
    p_request_id text, p_idempotency_key text, p_fingerprint bytea, p_key_retention_hours integer,
    p_default_rpm integer, p_default_concurrent integer
) RETURNS TABLE (reason text, available numeric, unlimited boolean, retry_after integer, key_hold_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    amount numeric := billing_credits(p_amount);
    a credit_accounts%ROWTYPE;
    existing credit_holds%ROWTYPE;
    key_state record;
    attempt integer := NULL;
    rpm integer;
    concurrent integer;
    at timestamptz;
    next_tat timestamptz;
BEGIN
    IF amount <= 0 THEN
        RAISE EXCEPTION 'a hold must be positive' USING ERRCODE = 'FB004';
    END IF;
    SELECT * INTO existing FROM credit_holds h WHERE h.id = p_hold_id;
    IF FOUND THEN
        IF existing.user_id <> p_user_id OR existing.amount <> amount THEN
            RAISE EXCEPTION 'hold id % is already used for another hold', p_hold_id USING ERRCODE = 'FB006';
        END IF;
        SELECT * INTO a FROM credit_accounts c WHERE c.user_id = p_user_id;
        RETURN QUERY SELECT 'ok'::text, a.available, a.unlimited, 0, NULL::uuid;
        RETURN;
    END IF;

    SELECT * INTO a FROM credit_accounts c WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Under the account lock, as the void that wrote it: a void and a late reserve of one id never both win.
    IF EXISTS (SELECT 1 FROM voided_hold_ids v WHERE v.hold_id = p_hold_id) THEN
        RETURN QUERY SELECT 'hold_voided'::text, a.available, a.unlimited, 0, NULL::uuid;
        RETURN;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO key_state FROM billing_key_state(p_user_id, p_idempotency_key, p_fingerprint,
                                                       p_key_retention_hours);
        IF key_state.reason <> 'ok' THEN
            RETURN QUERY SELECT key_state.reason, a.available, a.unlimited,
                                CASE WHEN key_state.reason = 'key_in_progress' THEN 1 ELSE 0 END, key_state.hold_id;
            RETURN;
        END IF;
        attempt := key_state.next_attempt;
    END IF;

    rpm := COALESCE(a.requests_per_minute, p_default_rpm);
    concurrent := COALESCE(a.max_concurrent, p_default_concurrent);
    at := clock_timestamp();
    IF rpm > 0 THEN
        next_tat := greatest(a.rate_tat, at) + (60000000 / rpm) * interval '1 microsecond';
    END IF;
    IF NOT a.unlimited THEN
        IF a.available < amount THEN
            RETURN QUERY SELECT 'insufficient_credits'::text, a.available, a.unlimited, 0, NULL::uuid;
            RETURN;
        ELSIF concurrent > 0 AND a.holds_open >= concurrent THEN
            RETURN QUERY SELECT 'max_concurrent'::text, a.available, a.unlimited, 1, NULL::uuid;
            RETURN;
        ELSIF rpm > 0 AND next_tat - at > interval '60 seconds' THEN
            RETURN QUERY SELECT 'requests_per_minute'::text, a.available, a.unlimited,
                greatest(1, ceil(extract(epoch FROM next_tat - at - interval '60 seconds')))::integer, NULL::uuid;
            RETURN;
        END IF;
    END IF;

    UPDATE credit_accounts c
    SET available = a.available - amount, held = a.held + amount, holds_open = a.holds_open + 1,
        rate_tat = CASE WHEN a.unlimited OR rpm = 0 THEN a.rate_tat ELSE next_tat END,
        updated_at = now()
    WHERE c.user_id = p_user_id;
    INSERT INTO credit_holds (id, user_id, amount, endpoint, request_id, expires_at, idempotency_key, fingerprint,
                              key_attempt)
    VALUES (p_hold_id, p_user_id, amount, p_endpoint, p_request_id, now() + make_interval(secs => p_ttl_seconds),
            p_idempotency_key, CASE WHEN p_idempotency_key IS NULL THEN NULL ELSE p_fingerprint END, attempt);
    INSERT INTO pending_holds (hold_id, user_id, expires_at)
    VALUES (p_hold_id, p_user_id, now() + make_interval(secs => p_ttl_seconds));
    INSERT INTO credit_transactions (user_id, transaction_type, credits_amount, balance_before, balance_after, hold_id)
    VALUES (p_user_id, 'hold', -amount, a.available, a.available - amount, p_hold_id);
    RETURN QUERY SELECT 'ok'::text, a.available - amount, a.unlimited, 0, NULL::uuid;
END
$$;
