-- Low-credit alerts and the "credit limit" event (a metered call refused for insufficient credits), written
-- through a transactional outbox: an alert is a row committed in the same transaction as the balance movement
-- that caused it, and billing's dispatcher (services/billing/alerts/dispatcher.py) delivers it afterwards, by
-- mail and, when the user set one, to a signed webhook. A rolled-back charge leaves no alert; a process that
-- dies after the commit loses none.

-- The balance an alert watches: the credits the user owns. A pending hold moves credits from `available` to
-- `held` without spending them, so reserving, voiding and expiring leave it unchanged; only posted charges,
-- grants, purchases, refunds and adjustments move it. This column is the one definition of that balance:
-- the alert trigger, its WHEN clause and every reader use it. To change it (e.g. available + held - debt):
--     ALTER TABLE credit_accounts ALTER COLUMN owned SET EXPRESSION AS (available + held - debt);
-- (PostgreSQL 17+; the trigger below keeps working, as it names the column, not the expression.)
ALTER TABLE credit_accounts ADD COLUMN owned numeric(18,4) GENERATED ALWAYS AS (available + held) STORED;

-- The default threshold, for users without their own: billing writes its BILLING_ALERT_DEFAULT_THRESHOLD
-- here when it starts, so the trigger reads it in the same transaction as the movement it judges.
CREATE TABLE credit_alert_defaults (
    singleton  boolean       PRIMARY KEY DEFAULT true CHECK (singleton),
    threshold  numeric(18,4) NOT NULL CHECK (threshold >= 0),
    updated_at timestamptz   NOT NULL DEFAULT now()
);
INSERT INTO credit_alert_defaults (threshold) VALUES (100);

-- Each user's alert settings and state. No row = the defaults: the default threshold, no webhook, armed.
--   threshold       NULL = the default; 0 = no low-credit alert (the balance is never below 0)
--   webhook_url     where the signed alert is POSTed (NULL = mail only); webhook_secret its HMAC key
--   armed           the next movement that drops the balance below the threshold alerts (and disarms);
--                   a movement that leaves it at or above the threshold re-arms, so does a changed threshold
--   limit_armed     the next refusal for insufficient credits records a "credit limit" event (and disarms);
--                   credits arriving (the balance rising) re-arm it, so a client hammering while broke
--                   makes one event, not one per request
CREATE TABLE credit_alert_settings (
    user_id        bigint        PRIMARY KEY REFERENCES credit_accounts (user_id),
    threshold      numeric(18,4) CHECK (threshold >= 0),
    webhook_url    text          CHECK (length(webhook_url) <= 2048),
    webhook_secret text,
    armed          boolean       NOT NULL DEFAULT true,
    limit_armed    boolean       NOT NULL DEFAULT true,
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT credit_alert_settings_secret_with_url CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
);

-- The outbox: one immutable row per event.
--   low_balance   a movement took the balance (`owned`) below `threshold`
--   credit_limit  a metered call needing `required` credits was refused; `available` is what could be spent
CREATE TABLE credit_alerts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint        NOT NULL REFERENCES credit_accounts (user_id),
    kind       text          NOT NULL CHECK (kind IN ('low_balance', 'credit_limit')),
    balance    numeric(18,4) NOT NULL,
    available  numeric(18,4) NOT NULL,
    threshold  numeric(18,4),
    required   numeric(18,4),
    endpoint   text,
    created_at timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT credit_alerts_fields CHECK (
        (kind = 'low_balance' AND threshold IS NOT NULL AND required IS NULL)
        OR (kind = 'credit_limit' AND required IS NOT NULL AND threshold IS NULL))
);
CREATE INDEX credit_alerts_user_id_idx ON credit_alerts (user_id, id DESC);

-- One delivery per event and channel, written with the event, so a failing channel never blocks or repeats
-- the other. `next_attempt_at` is when it is due, and while a dispatcher holds it, its lease: claiming moves
-- it past the delivery's timeout (FOR UPDATE SKIP LOCKED: one replica claims each), so a dispatcher that dies
-- mid-delivery only delays it. After `attempts` failures (BILLING_ALERT_MAX_ATTEMPTS) it is `dead`, a dead
-- letter that `fsg-billing alerts replay` sends again; `skipped` = nowhere to send it (no SMTP_URL, the
-- webhook removed, the user gone).
CREATE TABLE credit_alert_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint      NOT NULL REFERENCES credit_alerts (id),
    channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    CONSTRAINT credit_alert_deliveries_one_per_channel UNIQUE (alert_id, channel)
);
CREATE INDEX credit_alert_deliveries_due_idx ON credit_alert_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX credit_alert_deliveries_dead_idx ON credit_alert_deliveries (id) WHERE state = 'dead';

-- The trigger: only an UPDATE that changes the owned balance of a limited account runs anything (the WHEN
-- clause is evaluated without calling a function), so a reserve, a void or an unlimited account's movement
-- costs nothing. What it does is billing_alert_balance_moved (migrations/functions/), kept there so it can
-- change like the other functions; this shim only hands over the row (a trigger's own function cannot be
-- dropped and re-created while the trigger uses it).
CREATE FUNCTION credit_accounts_balance_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM billing_alert_balance_moved(NEW.user_id, OLD.owned, NEW.owned, NEW.available);
    RETURN NULL;
END
$$;
CREATE TRIGGER credit_accounts_alerts
    AFTER UPDATE ON credit_accounts
    FOR EACH ROW
    WHEN (OLD.owned IS DISTINCT FROM NEW.owned AND NOT NEW.unlimited)
    EXECUTE FUNCTION credit_accounts_balance_moved();

-- billing: settings and arming change in place; events are only ever added; deliveries move through their
-- states. Nothing is deleted.
GRANT SELECT, INSERT, UPDATE ON credit_alert_defaults, credit_alert_settings, credit_alert_deliveries TO fsg_billing;
GRANT SELECT, INSERT ON credit_alerts TO fsg_billing;
