-- What the alert trigger on credit_accounts does when a limited account's owned balance moved (migrations/
-- 0014_credit_alerts.sql), in the transaction that moved it and under that account's row lock, so the
-- movements of one account are judged one at a time, in order:
--   * a drop that ends below the user's threshold (their own, else the default) while armed writes a
--     `low_balance` event and its deliveries (mail, and the webhook if the user has one), and disarms;
--   * a movement that ends at or above the threshold re-arms;
--   * a rise re-arms the "credit limit" event (billing_alert_credit_limit).
-- A movement that changes nothing here (the common case: a charge that stays above the threshold) writes
-- nothing.
CREATE FUNCTION billing_alert_balance_moved(p_user_id bigint, p_before numeric, p_after numeric,
                                            p_available numeric) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    threshold numeric;
    armed boolean;
    limit_armed boolean;
    alert bigint;
BEGIN
    -- One lookup for the user's row (if any) and the default: this runs on every charge.
    SELECT c.threshold, c.webhook_url, c.armed, c.limit_armed, d.threshold AS default_threshold INTO s
    FROM credit_alert_defaults d LEFT JOIN credit_alert_settings c ON c.user_id = p_user_id;
    threshold := COALESCE(s.threshold, s.default_threshold);
    armed := COALESCE(s.armed, true);
    limit_armed := COALESCE(s.limit_armed, true);
    IF p_after < threshold THEN
        IF armed AND p_after < p_before THEN
            INSERT INTO credit_alerts (user_id, kind, balance, available, threshold)
            VALUES (p_user_id, 'low_balance', p_after, p_available, threshold)
            RETURNING id INTO alert;
            INSERT INTO credit_alert_deliveries (alert_id, channel) VALUES (alert, 'email');
            IF s.webhook_url IS NOT NULL THEN
                INSERT INTO credit_alert_deliveries (alert_id, channel) VALUES (alert, 'webhook');
            END IF;
            armed := false;
        END IF;
    ELSE
        armed := true;
    END IF;
    IF p_after > p_before THEN
        limit_armed := true;
    END IF;
    IF armed IS DISTINCT FROM COALESCE(s.armed, true) OR limit_armed IS DISTINCT FROM COALESCE(s.limit_armed, true)
    THEN
        INSERT INTO credit_alert_settings AS c (user_id, armed, limit_armed) VALUES (p_user_id, armed, limit_armed)
        ON CONFLICT (user_id) DO UPDATE SET armed = EXCLUDED.armed, limit_armed = EXCLUDED.limit_armed;
    END IF;
END
$$;
