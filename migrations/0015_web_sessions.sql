-- The web app (/app): sessions owned by auth, the admin's user search, and the usage reports' indexes.
--
-- A browser signs in once with its API key and gets a random session token in a cookie. Only the token's
-- SHA-256 is stored (as only a key's is), so a copy of this table signs nobody in. A session is tied to the
-- key it was made from (key_hash): rotating that key, or disabling the user, ends every session made with it
-- at once, on every edge replica, with nothing to update here.
CREATE TABLE web_sessions (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    user_id       bigint      NOT NULL REFERENCES user_accounts (id),
    key_hash      bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    CHECK (expires_at > created_at)
);
-- Sign-in forgets the user's ended sessions; the sweep of everyone's uses the expiry.
CREATE INDEX web_sessions_user_id_idx ON web_sessions (user_id);
CREATE INDEX web_sessions_expires_at_idx ON web_sessions (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON web_sessions TO fsg_auth;

-- The admin console's user search: a prefix of the username or of the email, case-insensitively. The
-- existing unique indexes on lower(...) use the database's collation, which LIKE cannot use for a prefix;
-- these can.
CREATE INDEX user_accounts_username_prefix_idx ON user_accounts (lower(username) text_pattern_ops);
CREATE INDEX user_accounts_email_prefix_idx ON user_accounts (lower(email) text_pattern_ops);

-- The console's recent failed calls: newest first without reading the successful ones.
CREATE INDEX usage_logs_failed_idx ON usage_logs (id DESC) WHERE NOT response_success;
