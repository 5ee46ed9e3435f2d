-- A purchase paid through Stripe's hosted checkout keeps its Checkout Session, so a retried request (the same
-- Idempotency-Key) answers the same checkout page instead of opening a second one.
ALTER TABLE purchases ADD COLUMN checkout_session_id text UNIQUE;
