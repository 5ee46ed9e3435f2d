"""The services' named answers as the edge answers them over HTTP, each mapped once, here:

- a Reserve that placed nothing (`billing_pb2.Reason`) → 402, 409, 422, 429 or 503;
- how a settlement ended (`billing_pb2.Outcome`) → paid (the result is delivered) or not paid (it is not kept);
- why Claude's call failed (`ExecuteResponse.error_type`) → 502, 503, 504 or 409.

tests/edge/test_outcome_mapping.py checks that every value of each enum has its entry.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from common.logging import get_logger
from common.money import for_json, from_wire
from edge.errors import ApiError, IdempotencyKeyReused
from edge.metrics import GENERATIONS
from edge.rate_limits import rate_limited
from protos import billing_pb2

_events = get_logger(__name__)
Reason = billing_pb2.Reason
Outcome = billing_pb2.Outcome


def _insufficient(reserved: billing_pb2.ReserveResponse, user_id: int, endpoint: str, required: Decimal) -> ApiError:
    GENERATIONS.labels(endpoint, "insufficient_credits").inc()
    available = from_wire(reserved.available)
    _events.info("credits.limit_hit", message=f"user {user_id}: insufficient credits for {endpoint}",
                 user_id=user_id, endpoint=endpoint, required=str(for_json(required)),
                 available=str(for_json(available)), owes=available < 0)
    if available < 0:
        return ApiError(402, "Insufficient credits", remaining=available, required=required, owed=-available,
                        message=f"Your account owes {for_json(-available)} credits: a refunded or disputed purchase "
                                "took back credits that were already spent. Buy credits to pay it and continue")
    return ApiError(402, "Insufficient credits", remaining=available, required=required,
                    message="Please purchase more credits to continue")


def _rate_limited(reserved: billing_pb2.ReserveResponse, user_id: int, endpoint: str, required: Decimal) -> ApiError:
    return rate_limited(user_id, endpoint, reserved)


def _in_progress(reserved: billing_pb2.ReserveResponse, user_id: int, endpoint: str, required: Decimal) -> ApiError:
    error = ApiError(409, "Request in progress",
                     "A request with this Idempotency-Key is still running; retry after it ends")
    error.headers = {"Retry-After": str(max(1, reserved.retry_after_seconds))}
    return error


def _mismatch(reserved: billing_pb2.ReserveResponse, user_id: int, endpoint: str, required: Decimal) -> ApiError:
    return IdempotencyKeyReused()


def _voided(reserved: billing_pb2.ReserveResponse, user_id: int, endpoint: str, required: Decimal) -> ApiError:
    # Only a hold id this edge gave up on (its Reserve answer was lost) is voided before it is placed; a new
    # call always brings a new id, so this answers a retry that raced its own void.
    return ApiError(503, "Service unavailable", "The billing service did not answer in time; please retry")


Refusal = Callable[[billing_pb2.ReserveResponse, int, str, Decimal], ApiError]
#: A Reserve's reason → its HTTP error. REASON_UNSPECIFIED (placed) and KEY_REPLAY (the first result) are
#: answers, not refusals, and are handled by the pipeline.
REFUSALS: dict[int, Refusal] = {
    Reason.INSUFFICIENT_CREDITS: _insufficient,
    Reason.REQUESTS_PER_MINUTE: _rate_limited,
    Reason.MAX_CONCURRENT: _rate_limited,
    Reason.KEY_IN_PROGRESS: _in_progress,
    Reason.KEY_MISMATCH: _mismatch,
    Reason.HOLD_VOIDED: _voided,
}
ANSWERS = frozenset({Reason.REASON_UNSPECIFIED, Reason.KEY_REPLAY})

#: Settlements after which the call is paid: its result is delivered (and is part of the project).
PAID = frozenset({Outcome.POSTED, Outcome.ALREADY_POSTED})
#: Settlements after which it is not: nothing was charged, and its staged result is never part of the project.
UNPAID = frozenset({Outcome.VOIDED, Outcome.EXPIRED, Outcome.ALREADY_VOIDED, Outcome.ALREADY_EXPIRED})
#: Posted before with another amount: charged (that amount), but not as this call computed it. A bug
#: somewhere, answered as an error and logged.
CONFLICTING = frozenset({Outcome.EXISTS_WITH_DIFFERENT_AMOUNT})

#: Claude's failures (generation's error_type) → the caller's HTTP status. "conflict": the project was
#: deleted while the call ran.
FAILURE_STATUS = {"rate_limited": 503, "overloaded": 503, "timeout": 504, "upstream_error": 502,
                  "invalid_output": 502, "conflict": 409}
