-- The guide's reporting surface: `users` joins auth's accounts with billing's balances, so the guide's
-- SQL ("SELECT username, credits_remaining, created_at FROM users", joins on usage_logs.user_id = users.id)
-- runs unchanged while each service keeps owning its own table. credits_remaining is NULL for unlimited
-- accounts: "unlimited" is a property, not a number.
CREATE VIEW users AS
SELECT a.id,
       a.username,
       a.email,
       CASE WHEN c.unlimited THEN NULL ELSE COALESCE(c.available, 0) END AS credits_remaining,
       COALESCE(c.held, 0)                    AS credits_held,
       COALESCE(c.total_credits_purchased, 0) AS total_credits_purchased,
       COALESCE(c.unlimited, false)           AS unlimited_credits,
       a.is_admin,
       a.disabled_at IS NULL                  AS is_active,
       a.api_key_prefix,
       a.created_at,
       a.updated_at
FROM user_accounts a
LEFT JOIN credit_accounts c ON c.user_id = a.id;
