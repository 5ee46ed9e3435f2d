-- What an idempotency key's record says for a request with this fingerprint, from its newest attempt:
--   ok               no attempt within the retention (or the newest was voided or expired: it charged
--                    nothing), so a new attempt may run; `next_attempt` is its number
--   key_replay       the newest attempt was posted: `hold_id` is the hold whose result answers
--   key_in_progress  the newest attempt is still pending: `hold_id` is that hold
--   key_mismatch     the key was used for a request with another fingerprint
-- Called by billing_reserve under the account's row lock (so its verdict and the new hold are one step)
-- and by LookupKey on its own.
CREATE FUNCTION billing_key_state(
    p_user_id bigint, p_idempotency_key text, p_fingerprint bytea, p_key_retention_hours integer
) RETURNS TABLE (reason text, hold_id uuid, next_attempt integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    newest record;
BEGIN
    SELECT h.id, h.fingerprint, h.key_attempt, h.created_at, r.outcome INTO newest
    FROM credit_holds h LEFT JOIN credit_hold_resolutions r ON r.hold_id = h.id
    WHERE h.user_id = p_user_id AND h.idempotency_key = p_idempotency_key
    ORDER BY h.key_attempt DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'ok'::text, NULL::uuid, 1;
    ELSIF newest.created_at <= now() - make_interval(hours => p_key_retention_hours) THEN
        RETURN QUERY SELECT 'ok'::text, NULL::uuid, newest.key_attempt + 1;
    ELSIF newest.fingerprint <> p_fingerprint THEN
        RETURN QUERY SELECT 'key_mismatch'::text, NULL::uuid, newest.key_attempt + 1;
    ELSIF newest.outcome = 'posted' THEN
        RETURN QUERY SELECT 'key_replay'::text, newest.id, newest.key_attempt + 1;
    ELSIF newest.outcome IS NULL THEN
        RETURN QUERY SELECT 'key_in_progress'::text, newest.id, newest.key_attempt + 1;
    ELSE
        RETURN QUERY SELECT 'ok'::text, NULL::uuid, newest.key_attempt + 1;
    END IF;
END
$$;
