"""Per-user rate limits as the edge answers them: billing decides (in Reserve, under the account's row
lock, so every replica shares one exact count); the edge only turns a refusal into a 429 and shows limits.

A refused call placed no hold and wrote nothing: no ledger row and no usage row (usage rows record calls
that ran; counting refusals would let a flood of them inflate a user's request totals and cost a write
each, which is what the limit is there to prevent). Refusals are counted in the metrics and logged.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.errors import ApiError
from edge.metrics import GENERATIONS
from protos import billing_pb2

log = logging.getLogger(__name__)

#: Billing's rate-limit refusals → the `limit` named in the 429 body.
RATE_LIMITS = {
    billing_pb2.Reason.REQUESTS_PER_MINUTE: "requests_per_minute",
    billing_pb2.Reason.MAX_CONCURRENT: "max_concurrent",
}
_WHAT = {"requests_per_minute": "calls per minute", "max_concurrent": "calls in progress at once"}


def rate_limited(user_id: int, endpoint: str, reserved: billing_pb2.ReserveResponse) -> ApiError:
    """429 (not 402: the user can pay, just not this fast now) with a Retry-After header."""
    limit = RATE_LIMITS[reserved.reason]
    retry_after = max(1, reserved.retry_after_seconds)
    GENERATIONS.labels(endpoint, f"over_{limit}").inc()
    log.info("user %d: %s limit reached for %s; retry after %ds", user_id, limit, endpoint, retry_after)
    error = ApiError(429, "Rate limit exceeded", f"Too many {_WHAT[limit]}; retry after {retry_after} seconds",
                     limit=limit, retry_after=retry_after)
    error.headers = {"Retry-After": str(retry_after)}
    return error


def limits_body(limits: billing_pb2.Limits) -> dict[str, Any]:
    """Stored (null = the service default) and effective (0 = no limit) limits, for the admin and self routes."""
    return {
        "requests_per_minute": limits.requests_per_minute if limits.HasField("requests_per_minute") else None,
        "max_concurrent": limits.max_concurrent if limits.HasField("max_concurrent") else None,
        "effective": {
            "requests_per_minute": limits.effective_requests_per_minute,
            "max_concurrent": limits.effective_max_concurrent,
        },
        "exempt": limits.exempt,
        "in_flight": limits.holds_open,
    }
