"""Low-credit alerts and the "credit limit" event: a transactional outbox in billing's database and the
dispatcher that delivers it.

    the movement (settle, grant, …)  ──trigger, same transaction──▶  credit_alerts + credit_alert_deliveries
    a refusal for insufficient credits ──billing_alert_credit_limit──▶        (migrations/0014, functions/)
                                                                                 │
    dispatcher (a background task of every billing replica) ◀── claims due deliveries (SKIP LOCKED + lease)
        ├── email: the user's address from auth (GetUser), then SMTP (SMTP_URL)
        └── webhook: POST, signed with HMAC-SHA256 over "<t>.<body>" (FSG-Signature: t=…,v1=…)
    each failure backs off (exponential, jittered); after BILLING_ALERT_MAX_ATTEMPTS it is a dead letter,
    listed and replayed by `fsg-billing alerts dead-letters | replay`.

Modules: `repository` (settings, the credit-limit event, the outbox's states), `queries` (its SQL), `policy`
(retries), `mail` and `webhook` (what is sent, and how), `dispatcher` (the loop).
"""
