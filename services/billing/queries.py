"""The billing service's SQL, named and kept together. The statements that move money are functions, one
current definition per file in migrations/functions/ (read them there); this module calls them.

Lock order, everywhere: holds (an advisory lock per hold id: billing's role may not UPDATE holds, which a
row lock would need) before account rows (by user id). A single settlement locks its hold, then its
account; a batch locks all its holds, then all its accounts, before settling any;
reserves and grants lock only an account row. So settlements, batches, the sweeper, reserves and grants
never wait on each other in a cycle (tests/billing/test_lock_order.py runs them together).
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

#: Many grants in one statement (migrations/functions/billing_grant_many.sql): arrays of $1 users, $2 amounts,
#: $3 types, $4 whether each counts toward total_credits_purchased, $5 scoped idempotency keys, $6 notes,
#: $7 created_by. One row per item: (item, transaction_id, replayed, key_conflict).
GRANT_MANY = "SELECT * FROM billing_grant_many($1, $2, $3, $4, $5, $6, $7)"

#: The first grants of many idempotency keys ($1), for a dry run of a batch.
TRANSACTIONS_BY_IDEMPOTENCY_KEYS = """
SELECT id, user_id, transaction_type, credits_amount, notes, idempotency_key
FROM credit_transactions WHERE idempotency_key = ANY($1::text[])
"""

BALANCES = """
SELECT user_id, available, held, total_credits_purchased, unlimited FROM credit_accounts
WHERE user_id = ANY($1::bigint[])
"""

#: Place a pending hold under the account's row lock, within the balance and the rate limits, or answer why
#: not (migrations/functions/billing_reserve.sql). $1 hold id, $2 user, $3 amount, $4 ttl seconds,
#: $5 endpoint, $6 request id, $7 idempotency key (NULL = none), $8 fingerprint, $9 key retention hours,
#: $10 default requests per minute, $11 default max concurrent (0 = no limit). No row back = no account.
RESERVE = "SELECT * FROM billing_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"

#: Many reserves in one statement (arrays for $1-$8, then the three shared values); one row per item that
#: has an account, numbered by `item` (1-based).
RESERVE_MANY = "SELECT * FROM billing_reserve_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"

#: What an idempotency key's record says: $1 user, $2 key, $3 fingerprint, $4 retention hours.
KEY_STATE = "SELECT reason, hold_id FROM billing_key_state($1, $2, $3, $4)"

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

#: Post, void or expire a hold in one round trip (migrations/functions/billing_settle.sql): $1 hold id,
#: $2 user, $3 outcome, $4 charge, $5 result json (kept for replays of a keyed hold), $6 request id,
#: $7 endpoint, $8 method, $9 input tokens, $10 output tokens, $11 provider cost, $12 model, $13 project path,
#: $14 error message, $15 latency ms.
SETTLE = "SELECT * FROM billing_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"

#: Many settlements in one statement (one array per billing_settle argument); one row per item, numbered
#: by `item` (1-based).
SETTLE_MANY = "SELECT * FROM billing_settle_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"

#: Pending holds past their deadline, oldest first: $1 how many. No look-back window: pending_holds holds
#: only unresolved holds, so the sweeper drains every one of them however old.
EXPIRED_HOLDS = """
SELECT hold_id, user_id FROM pending_holds WHERE expires_at <= now() ORDER BY expires_at LIMIT $1
"""

#: A posted hold as its first answer told it (for a replay): $1 hold id.
REPLAY = """
SELECT h.id AS hold_id, h.request_id, x.result_json, u.input_tokens, u.output_tokens, u.model_used,
       r.amount AS charged, a.user_id, a.unlimited, a.held, a.total_credits_purchased,
       (SELECT t.balance_after FROM credit_transactions t WHERE t.hold_id = h.id ORDER BY t.id DESC LIMIT 1)
           AS available
FROM credit_holds h
JOIN credit_hold_resolutions r ON r.hold_id = h.id AND r.outcome = 'posted'
JOIN idempotent_results x ON x.hold_id = h.id
JOIN usage_logs u ON u.hold_id = h.id
JOIN credit_accounts a ON a.user_id = h.user_id
WHERE h.id = $1
"""

#: Housekeeping: replay results past the retention ($1 hours), void markers past a day.
PURGE_RESULTS = "DELETE FROM idempotent_results WHERE created_at < now() - make_interval(hours => $1)"
PURGE_VOIDED_IDS = "DELETE FROM voided_hold_ids WHERE created_at < now() - interval '1 day'"

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

#: The usage log from $1 (inclusive) to $2 (exclusive), rows after id $3, $4 at most, in id order (export).
USAGE_PAGE = """
SELECT id, user_id, created_at, request_id, endpoint, method, model_used, project_path, input_tokens, output_tokens,
       tokens_used, credits_cost, provider_cost, response_success, error_message, latency_ms
FROM usage_logs
WHERE created_at >= $1 AND created_at < $2 AND id > $3
ORDER BY id
LIMIT $4
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
SELECT id, transaction_type, credits_amount, balance_after, notes, created_by, hold_id, created_at, purchase_id,
       stripe_event_id
FROM credit_transactions
WHERE user_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)  -- bigint: `$2 = 0` alone would type it int4
ORDER BY id DESC
LIMIT $3
"""

#: Re-derive every account's cached numbers from the ledger and the holds (and what it owes from its balance);
#: any row returned is a difference.
RECONCILE = """
WITH ledger AS (
    SELECT user_id,
           sum(credits_amount) AS available,
           sum(credits_amount) FILTER (WHERE transaction_type IN ('grant', 'purchase', 'clawback')) AS purchased,
           bool_and(balance_after = balance_before + credits_amount) AS rows_consistent
    FROM credit_transactions GROUP BY user_id
), pending AS (
    SELECT h.user_id, sum(h.amount) AS held, count(*) AS holds
    FROM credit_holds h
    WHERE NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)
    GROUP BY h.user_id
), listed AS (
    SELECT user_id, count(*) AS holds FROM pending_holds GROUP BY user_id
), charged AS (
    SELECT user_id, sum(-credits_amount) AS usage FROM credit_transactions
    WHERE transaction_type = 'usage' GROUP BY user_id
), logged AS (
    SELECT user_id, sum(credits_cost) AS usage FROM usage_logs GROUP BY user_id
)
SELECT a.user_id,
       a.available, COALESCE(l.available, 0) AS ledger_available,
       a.held, COALESCE(p.held, 0) AS pending_held,
       a.holds_open, COALESCE(p.holds, 0) AS pending_holds, COALESCE(s.holds, 0) AS listed_pending_holds,
       a.total_credits_purchased, COALESCE(l.purchased, 0) AS ledger_purchased,
       COALESCE(c.usage, 0) AS ledger_usage, COALESCE(g.usage, 0) AS logged_usage,
       COALESCE(l.rows_consistent, true) AS rows_consistent, a.owed
FROM credit_accounts a
LEFT JOIN ledger l ON l.user_id = a.user_id
LEFT JOIN pending p ON p.user_id = a.user_id
LEFT JOIN listed s ON s.user_id = a.user_id
LEFT JOIN charged c ON c.user_id = a.user_id
LEFT JOIN logged g ON g.user_id = a.user_id
WHERE a.available <> COALESCE(l.available, 0)
   OR a.held <> COALESCE(p.held, 0)
   OR a.holds_open <> COALESCE(p.holds, 0)
   OR COALESCE(s.holds, 0) <> COALESCE(p.holds, 0)
   OR a.total_credits_purchased <> COALESCE(l.purchased, 0)
   OR COALESCE(c.usage, 0) <> COALESCE(g.usage, 0)
   OR NOT COALESCE(l.rows_consistent, true)
   OR a.owed <> CASE WHEN a.unlimited THEN 0 ELSE greatest(0, -a.available) END
ORDER BY a.user_id
"""

#: Every hold against its own rows: one `hold` ledger row of -amount that left a limited account's balance
#: at zero or above (no overdraft: billing_reserve's rule, checked after the fact); once resolved, exactly one
#: resolution (the primary key), one `release` row of +amount, one `usage` row of -charge when it charged anything (none
#: otherwise) and one usage_logs row costing the charge, successful iff posted; while pending, a
#: pending_holds row and none of the others. Any row returned is a hold whose rows disagree, with why.
RECONCILE_HOLDS = """
WITH ledger AS (
    SELECT hold_id,
           count(*) FILTER (WHERE transaction_type = 'hold') AS hold_rows,
           COALESCE(sum(credits_amount) FILTER (WHERE transaction_type = 'hold'), 0) AS held,
           min(balance_after) FILTER (WHERE transaction_type = 'hold') AS balance_after_hold,
           count(*) FILTER (WHERE transaction_type = 'release') AS release_rows,
           COALESCE(sum(credits_amount) FILTER (WHERE transaction_type = 'release'), 0) AS released,
           count(*) FILTER (WHERE transaction_type = 'usage') AS usage_rows,
           COALESCE(sum(-credits_amount) FILTER (WHERE transaction_type = 'usage'), 0) AS used
    FROM credit_transactions WHERE hold_id IS NOT NULL GROUP BY hold_id
), logs AS (
    SELECT hold_id, count(*) AS log_rows, COALESCE(sum(credits_cost), 0) AS logged,
           bool_and(response_success) AS all_success
    FROM usage_logs WHERE hold_id IS NOT NULL GROUP BY hold_id
), checked AS (
    SELECT h.id AS hold_id, h.user_id, h.amount, r.outcome, r.amount AS charge,
           COALESCE(l.hold_rows, 0) AS hold_rows, COALESCE(l.held, 0) AS held,
           COALESCE(l.release_rows, 0) AS release_rows, COALESCE(l.released, 0) AS released,
           COALESCE(l.usage_rows, 0) AS usage_rows, COALESCE(l.used, 0) AS used,
           COALESCE(g.log_rows, 0) AS log_rows, COALESCE(g.logged, 0) AS logged, g.all_success,
           EXISTS (SELECT 1 FROM pending_holds p WHERE p.hold_id = h.id) AS listed_pending,
           NOT a.unlimited AND l.balance_after_hold < 0 AS overdraft
    FROM credit_holds h
    JOIN credit_accounts a ON a.user_id = h.user_id
    LEFT JOIN credit_hold_resolutions r ON r.hold_id = h.id
    LEFT JOIN ledger l ON l.hold_id = h.id
    LEFT JOIN logs g ON g.hold_id = h.id
)
SELECT hold_id, user_id, amount, outcome, charge,
       CASE
           WHEN hold_rows <> 1 OR held <> -amount THEN 'hold ledger row missing, repeated or of another amount'
           WHEN overdraft THEN 'placed beyond the available balance (overdraft)'
           WHEN outcome IS NULL AND NOT listed_pending THEN 'pending but not in pending_holds'
           WHEN outcome IS NULL AND (release_rows + usage_rows + log_rows) > 0 THEN 'pending but already settled rows'
           WHEN outcome IS NULL THEN NULL
           WHEN listed_pending THEN 'resolved but still in pending_holds'
           WHEN release_rows <> 1 OR released <> amount THEN 'release ledger row missing, repeated or of another amount'
           WHEN usage_rows <> (CASE WHEN charge > 0 THEN 1 ELSE 0 END) OR used <> charge
               THEN 'usage ledger rows differ from the charge'
           WHEN log_rows <> 1 OR logged <> charge THEN 'usage_logs row missing, repeated or of another cost'
           WHEN all_success <> (outcome = 'posted') THEN 'usage_logs success differs from the outcome'
       END AS problem
FROM checked
WHERE CASE
          WHEN hold_rows <> 1 OR held <> -amount OR overdraft THEN true
          WHEN outcome IS NULL THEN NOT listed_pending OR (release_rows + usage_rows + log_rows) > 0
          ELSE listed_pending OR release_rows <> 1 OR released <> amount
               OR usage_rows <> (CASE WHEN charge > 0 THEN 1 ELSE 0 END) OR used <> charge
               OR log_rows <> 1 OR logged <> charge OR all_success <> (outcome = 'posted')
      END
ORDER BY hold_id
"""

#: Conservation over all accounts: what came in (grants, purchases less clawbacks, refunds, adjustments) minus what was
#: charged equals what the accounts hold (available + held); what is held equals the pending holds; and the
#: posted resolutions, the usage ledger rows and the usage log agree on what was charged.
CONSERVATION = """
SELECT
    (SELECT COALESCE(sum(credits_amount), 0) FROM credit_transactions
      WHERE transaction_type IN ('grant', 'purchase', 'refund', 'adjustment', 'clawback')) AS credited,
    (SELECT COALESCE(sum(-credits_amount), 0) FROM credit_transactions WHERE transaction_type = 'usage') AS charged,
    (SELECT COALESCE(sum(available + held), 0) FROM credit_accounts) AS in_accounts,
    (SELECT COALESCE(sum(held), 0) FROM credit_accounts) AS held,
    (SELECT COALESCE(sum(h.amount), 0) FROM credit_holds h
      WHERE NOT EXISTS (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)) AS pending,
    (SELECT COALESCE(sum(amount), 0) FROM credit_hold_resolutions WHERE outcome = 'posted') AS posted,
    (SELECT COALESCE(sum(credits_cost), 0) FROM usage_logs) AS logged
"""

# -- purchases ------------------------------------------------------------------------------------------
_PURCHASE_COLUMNS = """id, seq, user_id, pack_id, credits, amount, currency, state, payment_intent_id, credited,
refunded_amount, disputed_amount, failure_message, mismatch, idempotency_key, checkout_session_id, created_at,
updated_at"""

#: $1 id, $2 user, $3 idempotency key (NULL = none), $4 pack, $5 credits, $6 amount, $7 currency. No row back:
#: the user's key already names a purchase (a retry, or a concurrent twin).
INSERT_PURCHASE = f"""
INSERT INTO purchases (id, user_id, idempotency_key, pack_id, credits, amount, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (user_id, idempotency_key) DO NOTHING
RETURNING {_PURCHASE_COLUMNS}
"""

PURCHASE_BY_KEY = f"SELECT {_PURCHASE_COLUMNS} FROM purchases WHERE user_id = $1 AND idempotency_key = $2"
PURCHASE_BY_ID = f"SELECT {_PURCHASE_COLUMNS} FROM purchases WHERE id = $1"
PURCHASE_BY_PAYMENT_INTENT = f"SELECT {_PURCHASE_COLUMNS} FROM purchases WHERE payment_intent_id = $1"

#: $1 purchase, $2 PaymentIntent id: the intent created for it (first one wins).
SET_PAYMENT_INTENT = """
UPDATE purchases SET payment_intent_id = $2, updated_at = now()
WHERE id = $1 AND payment_intent_id IS NULL
"""

#: $1 purchase, $2 Checkout Session id: the hosted checkout created for it.
SET_CHECKOUT_SESSION = """
UPDATE purchases SET checkout_session_id = $2, updated_at = now()
WHERE id = $1 AND checkout_session_id IS NULL
"""

#: $1 purchase, $2 PaymentIntent id (may be NULL), $3 why: Stripe refused the payment while we asked it to
#: confirm. Moves no money: a purchase not yet paid becomes `failed` (a later success still counts).
RECORD_DECLINE = """
UPDATE purchases
SET failure_message = $3, payment_intent_id = COALESCE(payment_intent_id, $2),
    state = CASE WHEN state = 'pending' THEN 'failed' ELSE state END, updated_at = now()
WHERE id = $1
"""

#: $1 user, $2 before seq (0 = newest), $3 page size.
LIST_PURCHASES = f"""
SELECT {_PURCHASE_COLUMNS} FROM purchases
WHERE user_id = $1 AND ($2::bigint = 0 OR seq < $2::bigint)
ORDER BY seq DESC
LIMIT $3
"""

#: Apply one verified Stripe event to its purchase, once (migrations/functions/billing_purchase_apply.sql):
#: $1 purchase, $2 event id, $3 type, $4 object id, $5 PaymentIntent id, $6 paid amount, $7 currency,
#: $8 refunded amount, $9 dispute id, $10 dispute amount, $11 dispute status, $12 failure message.
APPLY_PURCHASE_EVENT = "SELECT * FROM billing_purchase_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"

#: An event billing acts on no further (ignored type, not ours): $1 id, $2 type, $3 object id, $4 outcome.
#: No row back: seen before.
RECORD_STRIPE_EVENT = """
INSERT INTO stripe_events (id, type, object_id, outcome) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

#: Purchases with a PaymentIntent, for checking against Stripe: $1 only those changed within this many days
#: (NULL = all).
PURCHASES_TO_CHECK = f"""
SELECT {_PURCHASE_COLUMNS},
       EXISTS (SELECT 1 FROM purchase_disputes d WHERE d.purchase_id = purchases.id) AS ever_disputed,
       paid_amount
FROM purchases
WHERE payment_intent_id IS NOT NULL
  AND ($1::integer IS NULL OR updated_at > now() - make_interval(days => $1::integer))
ORDER BY seq
"""

#: Every purchase against its own rows: what it credited equals the sum of its ledger rows and what its facts
#: say it should have (billing_purchase_target). Any row is a difference in the books.
RECONCILE_PURCHASES = """
WITH ledger AS (
    SELECT purchase_id, sum(credits_amount) AS moved FROM credit_transactions
    WHERE purchase_id IS NOT NULL GROUP BY purchase_id
), checked AS (
    SELECT p.id AS purchase_id, p.user_id, p.credited, COALESCE(l.moved, 0) AS moved,
           billing_purchase_target(p.credits, p.amount, p.paid_amount, p.refunded_amount, p.disputed_amount,
                                   p.mismatch) AS target
    FROM purchases p LEFT JOIN ledger l ON l.purchase_id = p.id
)
SELECT purchase_id, user_id,
       CASE WHEN credited <> moved THEN format('credited %s but its ledger rows sum to %s', credited, moved)
            ELSE format('credited %s but its payment facts say %s', credited, target) END AS problem
FROM checked
WHERE credited <> moved OR credited <> target
ORDER BY purchase_id
"""

#: Payments Stripe took that no purchase credits, for an operator to settle with the buyer (refund them):
#: a paid amount that does not match the pack, and events of a second PaymentIntent naming a purchase.
PURCHASES_NEEDING_ATTENTION = """
SELECT p.id AS purchase_id, p.user_id, 'paid, not credited: ' || p.mismatch AS problem
FROM purchases p WHERE p.mismatch IS NOT NULL
UNION ALL
SELECT e.purchase_id, p.user_id,
       format('event %s (%s) names this purchase but is of another PaymentIntent (%s)', e.id, e.type, e.object_id)
FROM stripe_events e JOIN purchases p ON p.id = e.purchase_id
WHERE e.outcome = 'conflict'
ORDER BY 1
"""
