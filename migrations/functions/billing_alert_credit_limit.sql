-- A metered call needing p_required credits was refused for insufficient credits: record the guide's "users
-- hitting credit limits" event through the alert outbox, once per arming (credits arriving re-arm it; see
-- billing_alert_balance_moved), so a client hammering while broke makes one event, not one per request.
-- Answers the event's id, or NULL when it was not armed (or the account does not exist). The arming flag is
-- flipped by one conditional upsert, so of two refusals racing only one records.
CREATE FUNCTION billing_alert_credit_limit(p_user_id bigint, p_required numeric, p_endpoint text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    acct credit_accounts%ROWTYPE;
    webhook text;
    alert bigint;
BEGIN
    -- The account first, as every money mover locks it (FOR UPDATE) before the balance trigger touches the
    -- settings row: KEY SHARE waits for a mover holding the account and blocks no plain update. Taken after
    -- the settings row (as the foreign keys below would), the order is reversed and the two deadlock.
    SELECT * INTO acct FROM credit_accounts a WHERE a.user_id = p_user_id FOR KEY SHARE;
    IF NOT FOUND OR acct.unlimited THEN
        RETURN NULL;
    END IF;
    INSERT INTO credit_alert_settings AS c (user_id, limit_armed) VALUES (p_user_id, false)
    ON CONFLICT (user_id) DO UPDATE SET limit_armed = false WHERE c.limit_armed
    RETURNING c.webhook_url INTO webhook;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO credit_alerts (user_id, kind, balance, available, required, endpoint)
    VALUES (p_user_id, 'credit_limit', acct.owned, acct.available, billing_credits(p_required), NULLIF(p_endpoint, ''))
    RETURNING id INTO alert;
    INSERT INTO credit_alert_deliveries (alert_id, channel) VALUES (alert, 'email');
    IF webhook IS NOT NULL THEN
        INSERT INTO credit_alert_deliveries (alert_id, channel) VALUES (alert, 'webhook');
    END IF;
    RETURN alert;
END
$$;
