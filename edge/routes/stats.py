"""The usage-stats document the guide shows, shared by the admin view and the user's own view."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from common.money import ZERO, from_wire
from protos import billing_pb2


def credits_owed(balance: billing_pb2.Balance) -> Decimal:
    """What a limited account owes: a refunded or disputed purchase took back credits already spent, so its
    balance is below zero (and metered calls are refused) until credits come in again."""
    return ZERO if balance.unlimited else max(ZERO, -from_wire(balance.available))


async def usage_stats_body(clients: Any, user_id: int, username: str) -> dict[str, Any]:
    stats = await clients.call("billing", clients.billing.UsageStats, billing_pb2.UserRef(user_id=user_id))
    balance = stats.balance
    return {
        "user": {
            "username": username,
            "credits_remaining": None if balance.unlimited else from_wire(balance.available),
            "total_credits_purchased": from_wire(balance.total_credits_purchased),
            "credits_held": from_wire(balance.held),
            "credits_owed": credits_owed(balance),
            "unlimited": balance.unlimited,
        },
        "usage": {
            "total_requests": stats.total_requests,
            "total_tokens": stats.total_tokens,
            "total_cost": from_wire(stats.total_cost),
            "successful_requests": stats.successful_requests,
            "avg_tokens_per_request": stats.avg_tokens_per_request,
        },
        "recentUsage": [
            {"endpoint": u.endpoint, "count": u.count, "total_cost": from_wire(u.total_cost)}
            for u in stats.recent_usage
        ],
    }
