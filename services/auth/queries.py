"""The auth service's SQL, named and kept together."""

USER_COLUMNS = "id, username, email, is_admin, disabled_at, api_key_prefix, created_at"

INSERT_USER = f"""
INSERT INTO user_accounts (username, email, api_key_hash, api_key_prefix, is_admin)
VALUES ($1, $2, $3, $4, $5)
RETURNING {USER_COLUMNS}
"""

#: Many users in one statement (arrays $1-$5 as INSERT_USER's values). A row that collides with an existing user
#: or an earlier row of the same statement (any unique index: username, email) is skipped, not an error, so
#: one taken name does not fail the batch; the stored hash comes back to tell which item each row is.
INSERT_USERS = f"""
INSERT INTO user_accounts (username, email, api_key_hash, api_key_prefix, is_admin)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::boolean[])
ON CONFLICT DO NOTHING
RETURNING {USER_COLUMNS}, api_key_hash
"""

#: Users with any of these usernames ($1) or emails ($2), compared as the unique indexes compare them (lower()
#: in the database, so Python's idea of lower case never decides), or ids ($3).
FIND_USERS = f"""
SELECT {USER_COLUMNS} FROM user_accounts
WHERE lower(username) = ANY(ARRAY(SELECT lower(u) FROM unnest($1::text[]) AS u))
   OR lower(email) = ANY(ARRAY(SELECT lower(e) FROM unnest($2::text[]) AS e))
   OR id = ANY($3::bigint[])
ORDER BY id
"""

#: Returns the stored hash too, for the constant-time comparison after the lookup.
USER_BY_KEY_HASH = f"SELECT {USER_COLUMNS}, api_key_hash FROM user_accounts WHERE api_key_hash = $1"
USER_BY_ID = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE id = $1"
USER_BY_USERNAME = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE lower(username) = lower($1)"

LIST_USERS = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE id > $1 ORDER BY id LIMIT $2"

#: LIST_USERS of the users whose username or email starts with $3 (lowered, LIKE-escaped, '%' appended):
#: the prefix indexes of migrations/0015 find them, so a search reads its matches, not the table.
SEARCH_USERS = f"""
SELECT {USER_COLUMNS} FROM user_accounts
WHERE id > $1 AND (lower(username) LIKE $3 OR lower(email) LIKE $3)
ORDER BY id LIMIT $2
"""

ROTATE_KEY = f"""
UPDATE user_accounts SET api_key_hash = $2, api_key_prefix = $3, updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""

#: Locks every admin row, in id order (so two callers cannot deadlock), when user $1 is an admin; nothing
#: otherwise, so changes to ordinary users never wait on the admins. Held until the transaction ends.
LOCK_ADMINS_IF_ADMIN = """
SELECT id FROM user_accounts
WHERE is_admin AND EXISTS (SELECT 1 FROM user_accounts target WHERE target.id = $1 AND target.is_admin)
ORDER BY id
FOR UPDATE
"""

#: True for a row of user_accounts ($1) whose disabling or API rotation still leaves an enabled admin: it is
#: not an admin, or not enabled, or another enabled admin exists.
SPARES_LAST_ADMIN = """(
    NOT is_admin OR disabled_at IS NOT NULL
    OR EXISTS (SELECT 1 FROM user_accounts other
               WHERE other.is_admin AND other.disabled_at IS NULL AND other.id <> $1)
)"""

#: ROTATE_KEY over the API: no row when $1 is the last enabled admin (its new key would live only in the answer).
ROTATE_KEY_SPARING_LAST_ADMIN = f"""
UPDATE user_accounts SET api_key_hash = $2, api_key_prefix = $3, updated_at = now()
WHERE id = $1 AND {SPARES_LAST_ADMIN}
RETURNING {USER_COLUMNS}
"""

#: No row when $1 is the last enabled admin (or does not exist).
DISABLE_USER = f"""
UPDATE user_accounts SET disabled_at = COALESCE(disabled_at, now()), updated_at = now()
WHERE id = $1 AND {SPARES_LAST_ADMIN}
RETURNING {USER_COLUMNS}
"""

ENABLE_USER = f"""
UPDATE user_accounts SET disabled_at = NULL, updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""

USER_EXISTS = "SELECT EXISTS (SELECT 1 FROM user_accounts WHERE id = $1)"

FIRST_ADMIN = f"SELECT {USER_COLUMNS} FROM user_accounts WHERE is_admin ORDER BY id LIMIT 1"

#: Serialises admin bootstrap across processes starting together.
BOOTSTRAP_LOCK = "SELECT pg_advisory_xact_lock(x'46534702'::int)"

#: Channel on which every key revocation is announced (delivered when the revoking transaction commits).
REVOCATION_CHANNEL = "fsg_key_revoked"
NOTIFY_REVOKED = "SELECT pg_notify('fsg_key_revoked', $1::text)"
