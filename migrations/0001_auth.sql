-- Auth service: accounts and API keys. Only a SHA-256 of each key is stored, plus a display prefix.
CREATE TABLE user_accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text        NOT NULL,
    email           text        NOT NULL,
    api_key_hash    bytea       NOT NULL,
    api_key_prefix  text        NOT NULL,
    is_admin        boolean     NOT NULL DEFAULT false,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_accounts_username_format CHECK (username ~ '^[A-Za-z0-9_.-]{3,64}$'),
    CONSTRAINT user_accounts_key_hash_len CHECK (octet_length(api_key_hash) = 32)
);
-- Usernames and emails are unique case-insensitively ("JohnDoe" and "johndoe" are one person).
CREATE UNIQUE INDEX user_accounts_username_key ON user_accounts (lower(username));
CREATE UNIQUE INDEX user_accounts_email_key ON user_accounts (lower(email));
CREATE UNIQUE INDEX user_accounts_api_key_hash_key ON user_accounts (api_key_hash);
