-- What a purchase should have credited, from what Stripe has told us about its payment, and nothing else:
-- nothing until it is paid, or when the payment did not match the pack (an operator's case); otherwise the
-- pack's credits less the share refunded or disputed (open or lost disputes), that share rounded up to
-- 0.0001 credit (the one rounding rule: never in the buyer's favour by a fraction). The facts only grow, so
-- this is the same whatever order the events came in.
CREATE FUNCTION billing_purchase_target(
    p_credits numeric, p_amount bigint, p_paid bigint, p_refunded bigint, p_disputed bigint, p_mismatch text
) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_mismatch IS NOT NULL OR p_paid = 0 THEN 0::numeric
        ELSE p_credits - ceil(p_credits * least(p_amount, p_refunded + p_disputed) * 10000 / p_amount) / 10000
    END
$$;
