-- A credit amount as it may enter the books: finite, at most 4 decimal places (1/100 of a cent), and at most
-- one million dollars either way. Every billing function passes its amounts through here, so an amount that
-- the columns' numeric(18,4) would silently round (1.00005) is refused instead (SQLSTATE FB004), whoever
-- sends it. Callers check the sign themselves (a hold is positive, a charge may be zero).
CREATE FUNCTION billing_credits(p_amount numeric) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_amount IS NULL OR p_amount = 'NaN'::numeric OR abs(p_amount) > 100000000
       OR p_amount <> round(p_amount, 4) THEN
        RAISE EXCEPTION 'invalid credit amount: %', p_amount
            USING ERRCODE = 'FB004', HINT = 'credits are finite decimals with at most 4 places';
    END IF;
    RETURN p_amount;
END
$$;
