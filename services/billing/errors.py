"""Billing domain errors.

    DomainError (common.errors)
    ├── InvalidCredits          INVALID_ARGUMENT  amount malformed, not positive, too many places, too large
    ├── InvalidBillingRequest   INVALID_ARGUMENT  other malformed input (hold id, idempotency key, type)
    ├── HoldNotFound            NOT_FOUND
    ├── ExceedsPendingAmount    FAILED_PRECONDITION  a post larger than its hold
    └── IdempotencyConflict     FAILED_PRECONDITION  a key reused for a different request

Settling an already-resolved hold is not an error: it answers a named outcome (already_posted,
already_voided, expired) with the first result, as TigerBeetle does.
"""

import grpc

from common.errors import DomainError


class InvalidCredits(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    message = "Invalid credit amount"


class InvalidBillingRequest(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    message = "Invalid billing request"


class HoldNotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    message = "Hold not found"


class ExceedsPendingAmount(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    message = "exceeds_pending_amount"


class IdempotencyConflict(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    message = "idempotency key already used for a different request"
