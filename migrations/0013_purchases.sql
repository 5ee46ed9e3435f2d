-- Credit purchases with Stripe. A purchase is created pending; credits arrive only from verified Stripe
-- events, each applied once (stripe_events), and every credit they move is a ledger row naming the purchase
-- and the event.
--
-- A purchase keeps what Stripe has told us about its payment as facts that only grow: paid, refunded and
-- disputed amounts (in the currency's minor unit, as Stripe counts). What the purchase should have credited
-- follows from those facts alone (billing_purchase_target), so events may arrive in any order, twice or
-- concurrently, and the books end the same: each event moves the difference between that target and what
-- the purchase has credited so far.
CREATE TABLE purchases (
    id                uuid          PRIMARY KEY,
    seq               bigint        GENERATED ALWAYS AS IDENTITY UNIQUE,  -- listing order
    user_id           bigint        NOT NULL REFERENCES credit_accounts (user_id),
    -- The buyer's Idempotency-Key and what it was used for: a retried POST answers the same purchase.
    idempotency_key   text          CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
    pack_id           text          NOT NULL,
    -- The pack as it was sold (the catalogue may change later): credits with any bonus, and the price.
    credits           numeric(18,4) NOT NULL CHECK (credits > 0),
    amount            bigint        NOT NULL CHECK (amount > 0),
    currency          text          NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    payment_intent_id text          UNIQUE,
    paid_amount       bigint        NOT NULL DEFAULT 0 CHECK (paid_amount >= 0),
    refunded_amount   bigint        NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    disputed_amount   bigint        NOT NULL DEFAULT 0 CHECK (disputed_amount >= 0),
    -- Why the last payment attempt failed (a declined card); a later success still counts.
    failure_message   text,
    -- Why a payment was not credited although Stripe took it (another amount or currency than the pack's):
    -- an operator's case, never guessed at.
    mismatch          text,
    -- Net credits this purchase has moved so far: the sum of its ledger rows (reconcile checks both).
    credited          numeric(18,4) NOT NULL DEFAULT 0,
    state             text          NOT NULL DEFAULT 'pending' CHECK (state IN
        ('pending', 'failed', 'succeeded', 'partially_refunded', 'refunded', 'disputed', 'mismatch')),
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT purchases_idempotency_key UNIQUE (user_id, idempotency_key)
);
CREATE INDEX purchases_user_seq_idx ON purchases (user_id, seq DESC);

-- One row per dispute (a charge may be disputed more than once); its newest status wins only if it is
-- later in the dispute's life (open → won | lost), so a reordered delivery cannot reopen a closed dispute.
CREATE TABLE purchase_disputes (
    dispute_id  text        PRIMARY KEY,
    purchase_id uuid        NOT NULL REFERENCES purchases (id),
    amount      bigint      NOT NULL CHECK (amount >= 0),
    status      text        NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchase_disputes_purchase_idx ON purchase_disputes (purchase_id);

-- Every Stripe event billing has acted on, by its id: the row is written in the same transaction as what
-- the event did, so a replayed, duplicated or concurrent delivery finds it and does nothing more.
CREATE TABLE stripe_events (
    id          text        PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
    type        text        NOT NULL,
    object_id   text,
    purchase_id uuid        REFERENCES purchases (id),
    -- applied: acted on (or found nothing new); ignored: a type billing does not act on; not_ours: no
    -- purchase of ours; conflict: another PaymentIntent than its purchase's (an operator's case).
    outcome     text        NOT NULL CHECK (outcome IN ('applied', 'ignored', 'not_ours', 'conflict')),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_purchase_idx ON stripe_events (purchase_id);

-- The ledger names the purchase and the Stripe event behind each of its rows.
ALTER TABLE credit_transactions
    ADD COLUMN purchase_id uuid REFERENCES purchases (id),
    ADD COLUMN stripe_event_id text,
    DROP CONSTRAINT credit_transactions_type,
    ADD CONSTRAINT credit_transactions_type CHECK (transaction_type IN
        ('grant', 'purchase', 'refund', 'adjustment', 'hold', 'release', 'usage', 'clawback')),
    ADD CONSTRAINT credit_transactions_purchase_rows CHECK (
        (transaction_type = 'clawback') <= (purchase_id IS NOT NULL)
        AND (purchase_id IS NOT NULL) <= (transaction_type IN ('purchase', 'clawback'))
        AND (purchase_id IS NOT NULL) = (stripe_event_id IS NOT NULL));
CREATE INDEX credit_transactions_purchase_idx ON credit_transactions (purchase_id) WHERE purchase_id IS NOT NULL;
CREATE UNIQUE INDEX credit_transactions_stripe_event ON credit_transactions (stripe_event_id)
    WHERE stripe_event_id IS NOT NULL;

-- A clawback takes back what a refunded or disputed purchase gave, even when it was already spent: the
-- balance then goes below zero, and the account owes that much (`owed`). Only a clawback creates a debt;
-- whatever adds to the balance afterwards (a purchase, a grant, a hold's release) pays it first, and
-- billing_reserve refuses every metered call while the balance is below what the call needs. The database
-- still refuses any overdraft: the balance may be below zero only by what is owed.
ALTER TABLE credit_accounts
    ADD COLUMN owed numeric(18,4) NOT NULL DEFAULT 0 CONSTRAINT credit_accounts_owed_nonnegative CHECK (owed >= 0),
    DROP CONSTRAINT credit_accounts_available_nonnegative,
    ADD CONSTRAINT credit_accounts_no_overdraft CHECK (unlimited OR available >= -owed);

GRANT SELECT, INSERT, UPDATE ON purchases TO fsg_billing;
GRANT SELECT, INSERT, UPDATE ON purchase_disputes TO fsg_billing;
GRANT SELECT, INSERT ON stripe_events TO fsg_billing;
