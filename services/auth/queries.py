"""The auth service's SQL, named and kept together."""

USER_COLUMNS = "id, username, email, is_admin, disabled_at, api_key_prefix, created_at"

INSERT_USER = f"""
INSERT INTO user_accounts (username, email, api_key_hash, api_key_prefix, is_admin)
VALUES ($1, $2, $3, $4, $5)
RETURNING {USER_COLUMNS}
"""

#: Returns the stored hash too, for the constant-time comparison after the lookup.
USER_BY_KEY_HASH = f"SELECT {USER_COLUMNS}, api_key_hash FROM user_accounts WHERE api_key_hash = $1"
USER_BY_ID = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE id = $1"
USER_BY_USERNAME = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE lower(username) = lower($1)"

LIST_USERS = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE id > $1 ORDER BY id LIMIT $2"

ROTATE_KEY = f"""
UPDATE user_accounts SET api_key_hash = $2, api_key_prefix = $3, updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""

SET_DISABLED = f"""
UPDATE user_accounts
SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) ELSE NULL END, updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""

FIRST_ADMIN = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE is_admin ORDER BY id LIMIT 1"

#: Serialises admin bootstrap across processes starting together.
BOOTSTRAP_LOCK = "SELECT pg_advisory_xact_lock(x'46534702'::int)"

#: Channel on which every key revocation is announced (delivered when the revoking transaction commits).
REVOCATION_CHANNEL = "fsg_key_revoked"
NOTIFY_REVOKED = "SELECT pg_notify('fsg_key_revoked', $1::text)"
