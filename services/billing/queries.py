"""The billing service's SQL, named and kept together.

Lock order, everywhere: a hold row (FOR UPDATE) before its account row, so settling and sweeping
never deadlock with each other or with reserves and grants (which lock the account row only).
"""

OPEN_ACCOUNT = """
INSERT INTO credit_accounts (user_id, unlimited) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET unlimited = credit_accounts.unlimited OR EXCLUDED.unlimited,
                                    updated_at = CASE WHEN EXCLUDED.unlimited AND NOT credit_accounts.unlimited
                                                      THEN now() ELSE credit_accounts.updated_at END
RETURNING user_id, available, held, total_credits_purchased, unlimited
"""

ENSURE_ACCOUNT = "INSERT INTO credit_accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING"

BALANCE = "SELECT user_id, available, held, total_credits_purchased, unlimited FROM credit_accounts WHERE user_id = $1"

TRANSACTION_BY_IDEMPOTENCY_KEY = """
SELECT id, user_id, transaction_type, credits_amount, notes FROM credit_transactions WHERE idempotency_key = $1
"""

#: $1 user, $2 amount (signed), $3 counts toward total_credits_purchased
MOVE_FOR_GRANT = """
UPDATE credit_accounts
SET available = available + $2,
    total_credits_purchased = total_credits_purchased + CASE WHEN $3 THEN $2 ELSE 0 END,
    updated_at = now()
WHERE user_id = $1
RETURNING available - $2 AS before, available AS after
"""

INSERT_TRANSACTION = """
INSERT INTO credit_transactions
    (user_id, transaction_type, credits_amount, balance_before, balance_after, hold_id, idempotency_key,
     notes, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id
"""

#: One atomic statement, one round trip: lock the account row, decide, and only if the verdict is `ok`
#: move available → held, count the hold in `holds_open`, advance the rate limiter, record the pending
#: hold and its ledger row. Deciding on the *locked* row (the newest version, which nobody else can change
#: until this commits) makes the limits exact across replicas: reserves for one user queue on that lock.
#: Checked in order: insufficient_credits, max_concurrent, requests_per_minute (a call that could never be
#: paid for is told so, and a refused call takes no rate token). Unlimited accounts are exempt from all.
#:
#: requests_per_minute is a GCRA with a burst of one minute's worth: T = 60 s / rpm (floored to whole
#: microseconds so that exactly rpm fit in a burst); allowed iff max(tat, now) + T - now <= 60 s, and
#: then tat := max(tat, now) + T. The clock is read after the lock is granted (clock_timestamp()), so
#: a reserve that queued on the lock is judged at the moment it decides.
#:
#: The new values are computed from the locked row (v.*), never from the UPDATE's own scan (a.*): that
#: scan reads the statement's snapshot, which can predate a settle that committed while this statement
#: waited for the lock, and PostgreSQL checks constraints on a row projected from that stale version
#: before it notices the newer one (EvalPlanQual) — a spurious overdraft CHECK failure. v.* is the
#: newest version and nobody else can change it until this statement commits.
#:
#: $1 hold id, $2 user, $3 amount, $4 ttl seconds, $5 endpoint, $6 request id,
#: $7 default requests per minute, $8 default max concurrent (0 = no limit).
#: No row back = no account (insufficient credits).
#: The statement is the function billing_reserve (migrations/0008_billing_batches.sql).
RESERVE = "SELECT * FROM billing_reserve($1, $2, $3, $4, $5, $6, $7, $8)"

#: Many reserves in one statement (arrays in the order of billing_reserve's arguments, then the two
#: defaults); one row per item that has an account, numbered by `item` (1-based).
RESERVE_MANY = "SELECT * FROM billing_reserve_many($1, $2, $3, $4, $5, $6, $7, $8)"


#: $1 user. The stored limits (NULL = the service default) and the pending-hold count.
LIMITS = """
SELECT user_id, requests_per_minute, max_concurrent, holds_open, unlimited FROM credit_accounts WHERE user_id = $1
"""

#: $1 user; $2/$4 whether to change requests_per_minute/max_concurrent, $3/$5 the new value (NULL = default).
#: Creates the account if needed, so limits can be set before the first grant.
SET_LIMITS = """
INSERT INTO credit_accounts (user_id, requests_per_minute, max_concurrent)
VALUES ($1, CASE WHEN $2 THEN $3::integer END, CASE WHEN $4 THEN $5::integer END)
ON CONFLICT (user_id) DO UPDATE
SET requests_per_minute = CASE WHEN $2 THEN EXCLUDED.requests_per_minute
                               ELSE credit_accounts.requests_per_minute END,
    max_concurrent = CASE WHEN $4 THEN EXCLUDED.max_concurrent ELSE credit_accounts.max_concurrent END,
    updated_at = now()
RETURNING user_id, requests_per_minute, max_concurrent, holds_open, unlimited
"""

HOLD = """
SELECT h.id, h.user_id, h.amount, r.outcome, r.amount AS resolved_amount
FROM credit_holds h LEFT JOIN credit_hold_resolutions r ON r.hold_id = h.id
WHERE h.id = $1
"""

#: Post, void or expire a hold in one round trip (migrations/0005_billing_settle_function.sql).
SETTLE = "SELECT * FROM billing_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"

#: Many settlements in one statement (one array per billing_settle argument); one row per item, numbered
#: by `item` (1-based).
SETTLE_MANY = "SELECT * FROM billing_settle_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"

#: Pending holds past expiry. The window keeps the scan short; the first sweep after start-up
#: passes a wide window to catch anything left while the service was down.
EXPIRED_HOLDS = """
SELECT h.id FROM credit_holds h
WHERE h.expires_at < now() AND h.expires_at > now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)
ORDER BY h.expires_at
LIMIT $2
"""

USAGE_TOTALS = """
SELECT count(*)                                   AS total_requests,
       COALESCE(sum(tokens_used), 0)              AS total_tokens,
       COALESCE(sum(credits_cost), 0)             AS total_cost,
       count(*) FILTER (WHERE response_success)   AS successful_requests
FROM usage_logs WHERE user_id = $1
"""

RECENT_USAGE = """
SELECT endpoint, count(*) AS count, COALESCE(sum(credits_cost), 0) AS total_cost
FROM usage_logs
WHERE user_id = $1 AND created_at > now() - make_interval(days => $2)
GROUP BY endpoint
ORDER BY count DESC, endpoint
"""

USAGE_TOTALS_MANY = """
SELECT a.user_id, a.available, a.held, a.total_credits_purchased, a.unlimited,
       COALESCE(u.total_requests, 0) AS total_requests, COALESCE(u.total_tokens, 0) AS total_tokens,
       COALESCE(u.total_cost, 0) AS total_cost
FROM credit_accounts a
LEFT JOIN (
    SELECT user_id, count(*) AS total_requests, sum(tokens_used) AS total_tokens, sum(credits_cost) AS total_cost
    FROM usage_logs WHERE user_id = ANY($1::bigint[]) GROUP BY user_id
) u ON u.user_id = a.user_id
WHERE a.user_id = ANY($1::bigint[])
"""

LIST_TRANSACTIONS = """
SELECT id, transaction_type, credits_amount, balance_after, notes, created_by, hold_id, created_at
FROM credit_transactions
WHERE user_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)  -- bigint: `$2 = 0` alone would type it int4
ORDER BY id DESC
LIMIT $3
"""

#: Re-derive every cached number from the ledger and the holds; any row returned is a difference.
RECONCILE = """
WITH ledger AS (
    SELECT user_id,
           sum(credits_amount) AS available,
           sum(credits_amount) FILTER (WHERE transaction_type IN ('grant', 'purchase')) AS purchased,
           bool_and(balance_after = balance_before + credits_amount) AS rows_consistent
    FROM credit_transactions GROUP BY user_id
), pending AS (
    SELECT h.user_id, sum(h.amount) AS held, count(*) AS holds
    FROM credit_holds h
    WHERE NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)
    GROUP BY h.user_id
), charged AS (
    SELECT user_id, sum(-credits_amount) AS usage FROM credit_transactions
    WHERE transaction_type = 'usage' GROUP BY user_id
), logged AS (
    SELECT user_id, sum(credits_cost) AS usage FROM usage_logs GROUP BY user_id
)
SELECT a.user_id,
       a.available, COALESCE(l.available, 0) AS ledger_available,
       a.held, COALESCE(p.held, 0) AS pending_held,
       a.holds_open, COALESCE(p.holds, 0) AS pending_holds,
       a.total_credits_purchased, COALESCE(l.purchased, 0) AS ledger_purchased,
       COALESCE(c.usage, 0) AS ledger_usage, COALESCE(g.usage, 0) AS logged_usage,
       COALESCE(l.rows_consistent, true) AS rows_consistent
FROM credit_accounts a
LEFT JOIN ledger l ON l.user_id = a.user_id
LEFT JOIN pending p ON p.user_id = a.user_id
LEFT JOIN charged c ON c.user_id = a.user_id
LEFT JOIN logged g ON g.user_id = a.user_id
WHERE a.available <> COALESCE(l.available, 0)
   OR a.held <> COALESCE(p.held, 0)
   OR a.holds_open <> COALESCE(p.holds, 0)
   OR a.total_credits_purchased <> COALESCE(l.purchased, 0)
   OR COALESCE(c.usage, 0) <> COALESCE(g.usage, 0)
   OR NOT COALESCE(l.rows_consistent, true)
ORDER BY a.user_id
"""
