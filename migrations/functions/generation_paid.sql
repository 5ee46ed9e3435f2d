-- Whether a project or a project part counts: it was not made by a metered call (no hold), it was seen paid
-- (settled), or billing has posted the hold that pays for it. The one definition of "paid" every project read
-- and the scene numbering use (services/generation/repository.py).
CREATE FUNCTION generation_paid(p_hold_id uuid, p_settled boolean) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_hold_id IS NULL OR p_settled
        OR EXISTS (SELECT 1 FROM hold_outcomes o WHERE o.hold_id = p_hold_id AND o.outcome = 'posted')
$$;
