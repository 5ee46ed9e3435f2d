"""Billing domain errors, and the SQLSTATEs the billing functions raise for them.

    DomainError (common.errors)
    ├── InvalidCredits          INVALID_ARGUMENT     amount malformed, not positive, over 4 places, too large
    ├── InvalidBillingRequest   INVALID_ARGUMENT     other malformed input (hold id, idempotency key, type)
    │   └── InvalidSettlement   INVALID_ARGUMENT     an outcome with an amount it cannot have (voided, charge 3)
    ├── HoldNotFound            NOT_FOUND
    ├── ExceedsPendingAmount    FAILED_PRECONDITION  a post larger than its hold
    ├── AccountMismatch         FAILED_PRECONDITION  a settlement naming another account than its hold's
    ├── IdempotencyConflict     FAILED_PRECONDITION  a key or hold id reused for a different request
    ├── UnknownPack, PurchaseNotFound                NOT_FOUND
    ├── InvalidSignature        INVALID_ARGUMENT     a Stripe webhook that does not verify
    ├── PaymentDeclined         PAYMENT_DECLINED     the card (or payment method) was refused
    └── PaymentProviderError, PaymentsNotConfigured  PAYMENT_PROVIDER: Stripe unreachable, or no key set

Settling an already-resolved hold is not an error: it answers a named outcome (services/billing/outcomes.py)
with the first result, as TigerBeetle does.
"""

from common.errors import DomainError, Refusal


class InvalidCredits(DomainError):
    refusal = Refusal.INVALID_INPUT
    message = "Invalid credit amount"


class InvalidBillingRequest(DomainError):
    refusal = Refusal.INVALID_INPUT
    message = "Invalid billing request"


class InvalidSettlement(InvalidBillingRequest):
    message = "A voided or expired hold charges nothing"


class HoldNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Hold not found"


class ExceedsPendingAmount(DomainError):
    refusal = Refusal.CONFLICT
    message = "exceeds_pending_amount"


class AccountMismatch(DomainError):
    refusal = Refusal.CONFLICT
    message = "The hold belongs to another account"


class IdempotencyConflict(DomainError):
    refusal = Refusal.IDEMPOTENCY_KEY_REUSED
    message = "idempotency key already used for a different request"




class UnknownPack(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Unknown credit pack"


class PurchaseNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Purchase not found"


class InvalidSignature(DomainError):
    """A webhook whose Stripe-Signature does not verify (missing, tampered, another secret, too old)."""

    refusal = Refusal.INVALID_INPUT
    message = "Invalid Stripe signature"


class PaymentDeclined(DomainError):
    refusal = Refusal.PAYMENT_DECLINED
    message = "Your card was declined"


class PaymentProviderError(DomainError):
    refusal = Refusal.PAYMENT_PROVIDER
    message = "The payment provider could not be reached; please retry"


class PaymentsNotConfigured(DomainError):
    refusal = Refusal.PAYMENT_PROVIDER
    message = "Payments are not configured on this server"


#: The custom SQLSTATEs of migrations/functions/*.sql → the error each means (one translation, here).
SQLSTATE_ERRORS: dict[str, type[DomainError]] = {
    "FB001": HoldNotFound,
    "FB002": ExceedsPendingAmount,
    "FB003": AccountMismatch,
    "FB004": InvalidCredits,
    "FB005": InvalidSettlement,
    "FB006": IdempotencyConflict,
    "FB007": PurchaseNotFound,
}
