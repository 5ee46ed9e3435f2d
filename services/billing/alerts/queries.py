"""The alert outbox's SQL, named and kept together (the tables: migrations/0014_credit_alerts.sql; what writes
an event: migrations/functions/billing_alert_balance_moved.sql and billing_alert_credit_limit.sql)."""

#: $1 the default threshold (BILLING_ALERT_DEFAULT_THRESHOLD), written when billing starts (only if it changed).
SET_DEFAULT_THRESHOLD = """
INSERT INTO credit_alert_defaults AS d (threshold) VALUES ($1)
ON CONFLICT (singleton) DO UPDATE SET threshold = EXCLUDED.threshold, updated_at = now()
WHERE d.threshold <> EXCLUDED.threshold
"""

#: $1 user: the account's owned balance, its alert settings (NULL: none of its own) and the default.
SETTINGS = """
SELECT a.owned AS balance, a.unlimited, s.threshold, s.webhook_url, COALESCE(s.armed, true) AS armed,
       (SELECT d.threshold FROM credit_alert_defaults d) AS default_threshold
FROM credit_accounts a LEFT JOIN credit_alert_settings s ON s.user_id = a.user_id
WHERE a.user_id = $1
"""

DEFAULT_THRESHOLD = "SELECT threshold FROM credit_alert_defaults"

#: $1 user: a settings row with the defaults, unless it has one (so that a change can lock it).
ENSURE_SETTINGS = "INSERT INTO credit_alert_settings (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING"

#: $1 user: the settings row, locked for a change.
LOCK_SETTINGS = """
SELECT threshold, webhook_url, webhook_secret FROM credit_alert_settings WHERE user_id = $1 FOR UPDATE
"""

#: $1 user, $2 threshold (NULL = the default), $3 webhook URL, $4 its secret, $5 re-arm (the threshold changed).
UPDATE_SETTINGS = """
UPDATE credit_alert_settings
SET threshold = $2, webhook_url = $3, webhook_secret = $4, armed = armed OR $5, updated_at = now()
WHERE user_id = $1
"""

#: A refusal for insufficient credits: $1 user, $2 what the call needed, $3 endpoint. The event's id, or NULL
#: (not armed: one was recorded since credits last arrived).
CREDIT_LIMIT = "SELECT billing_alert_credit_limit($1, $2, $3)"

#: Claim up to $1 due deliveries for $2 seconds (their lease), with what sending them needs. SKIP LOCKED: two
#: dispatchers never claim the same delivery; the lease (next_attempt_at moved past it) keeps it theirs after
#: this commits. Each claim counts as an attempt, so a delivery whose dispatcher keeps dying still ends.
CLAIM = """
WITH due AS (
    SELECT d.id FROM credit_alert_deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at, d.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE credit_alert_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM due, credit_alerts a LEFT JOIN credit_alert_settings s ON s.user_id = a.user_id
WHERE d.id = due.id AND a.id = d.alert_id
RETURNING d.id, d.channel, d.attempts, a.id AS alert_id, a.user_id, a.kind, a.balance, a.available, a.threshold,
          a.required, a.endpoint, a.created_at, s.webhook_url, s.webhook_secret
"""

#: The outcome of attempt $2 of delivery $1. Fenced by the attempt: a dispatcher whose lease ran out (another
#: took the delivery over) records nothing.
DELIVERED = """
UPDATE credit_alert_deliveries SET state = 'delivered', delivered_at = now(), last_error = NULL
WHERE id = $1 AND attempts = $2 AND state = 'pending'
"""
#: $3 dead (no attempt left), $4 seconds until the next attempt, $5 the error.
FAILED = """
UPDATE credit_alert_deliveries
SET state = CASE WHEN $3 THEN 'dead' ELSE 'pending' END, next_attempt_at = now() + make_interval(secs => $4),
    last_error = $5
WHERE id = $1 AND attempts = $2 AND state = 'pending'
"""
#: $3 why there is nowhere to send it.
SKIPPED = """
UPDATE credit_alert_deliveries SET state = 'skipped', last_error = $3
WHERE id = $1 AND attempts = $2 AND state = 'pending'
"""

#: The dead letters, oldest first: $1 how many.
DEAD_LETTERS = """
SELECT d.id, d.channel, d.attempts, d.last_error, d.next_attempt_at AS failed_at, a.id AS alert_id, a.user_id,
       a.kind, a.created_at
FROM credit_alert_deliveries d JOIN credit_alerts a ON a.id = d.alert_id
WHERE d.state = 'dead'
ORDER BY d.id
LIMIT $1
"""

#: Send dead letters again, with a fresh set of attempts: $1 their ids, or $2 true for every one.
REPLAY = """
UPDATE credit_alert_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now()
WHERE state = 'dead' AND (id = ANY($1::bigint[]) OR $2)
RETURNING id
"""
