-- Billing service: accounts, the ledger, two-phase holds and the usage log.
-- Credits are NUMERIC(18,4): 1 credit = 1 US cent, exact to 1/100 of a cent.
--
-- Vocabulary (after TigerBeetle's two-phase transfers): a hold is *pending* until it is resolved by
-- *posted* (the actual cost, at most the hold), *voided* (nothing charged) or *expired* (the sweeper
-- voided it). A resolution is a new row; holds are never updated in place.
CREATE TABLE credit_accounts (
    user_id                 bigint        PRIMARY KEY,
    available               numeric(18,4) NOT NULL DEFAULT 0,
    held                    numeric(18,4) NOT NULL DEFAULT 0,
    total_credits_purchased numeric(18,4) NOT NULL DEFAULT 0,
    unlimited               boolean       NOT NULL DEFAULT false,
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    -- The database itself refuses an overdraft; unlimited accounts may run a (logged) negative balance.
    CONSTRAINT credit_accounts_available_nonnegative CHECK (unlimited OR available >= 0),
    CONSTRAINT credit_accounts_held_nonnegative CHECK (held >= 0)
);

-- Every movement of an account's available balance is one row here, so
-- available = SUM(credits_amount) for the user, always (see `fsg-billing reconcile`).
CREATE TABLE credit_transactions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint        NOT NULL REFERENCES credit_accounts (user_id),
    transaction_type text          NOT NULL,
    credits_amount   numeric(18,4) NOT NULL,
    balance_before   numeric(18,4) NOT NULL,
    balance_after    numeric(18,4) NOT NULL,
    hold_id          uuid,
    idempotency_key  text,
    notes            text,
    created_by       text,
    created_at       timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT credit_transactions_type CHECK (transaction_type IN
        ('grant', 'purchase', 'refund', 'adjustment', 'hold', 'release', 'usage')),
    CONSTRAINT credit_transactions_balance_moves CHECK (balance_after = balance_before + credits_amount)
);
CREATE INDEX credit_transactions_user_id_idx ON credit_transactions (user_id, id DESC);
CREATE UNIQUE INDEX credit_transactions_idempotency_key ON credit_transactions (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE credit_holds (
    id          uuid          PRIMARY KEY,
    user_id     bigint        NOT NULL REFERENCES credit_accounts (user_id),
    amount      numeric(18,4) NOT NULL CHECK (amount > 0),
    endpoint    text          NOT NULL DEFAULT '',
    request_id  text          NOT NULL DEFAULT '',
    created_at  timestamptz   NOT NULL DEFAULT now(),
    expires_at  timestamptz   NOT NULL
);

CREATE TABLE credit_hold_resolutions (
    hold_id     uuid          PRIMARY KEY REFERENCES credit_holds (id),
    outcome     text          NOT NULL CHECK (outcome IN ('posted', 'voided', 'expired')),
    amount      numeric(18,4) NOT NULL CHECK (amount >= 0),
    created_at  timestamptz   NOT NULL DEFAULT now()
);
-- The sweeper looks for pending holds past their expiry.
CREATE INDEX credit_holds_expires_at_idx ON credit_holds (expires_at);

CREATE TABLE usage_logs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint        NOT NULL,
    request_id        text          NOT NULL,
    hold_id           uuid          REFERENCES credit_holds (id),
    endpoint          text          NOT NULL,
    method            text          NOT NULL DEFAULT 'POST',
    input_tokens      integer       NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens     integer       NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    tokens_used       integer       NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    credits_cost      numeric(18,4) NOT NULL DEFAULT 0 CHECK (credits_cost >= 0),
    provider_cost     numeric(18,4) NOT NULL DEFAULT 0 CHECK (provider_cost >= 0),
    model_used        text,
    project_path      text,
    response_success  boolean       NOT NULL,
    error_message     text,
    latency_ms        integer,
    created_at        timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX usage_logs_user_id_created_at_idx ON usage_logs (user_id, created_at DESC);
CREATE INDEX usage_logs_created_at_idx ON usage_logs (created_at DESC);
CREATE UNIQUE INDEX usage_logs_hold_id_key ON usage_logs (hold_id) WHERE hold_id IS NOT NULL;
