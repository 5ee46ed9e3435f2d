"""Self-service: a user's own stats, ledger and rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from common.money import from_wire
from edge import responses
from edge.deps import Clients
from edge.json import DecimalJSONResponse
from edge.rate_limits import limits_body
from edge.request_json import JsonRoute
from edge.routes.stats import usage_stats_body
from edge.schemas import MAX_ID
from edge.security import User
from protos import billing_pb2

router = APIRouter(prefix="/api", tags=["self-service"], route_class=JsonRoute)


@router.get("/my-stats", response_model=responses.UsageStats)
async def my_stats(clients: Clients, caller: User) -> DecimalJSONResponse:
    return DecimalJSONResponse(await usage_stats_body(clients, caller.id, caller.username))


@router.get("/my-limits", response_model=responses.Limits)
async def my_limits(clients: Clients, caller: User) -> DecimalJSONResponse:
    """The caller's own rate limits, so a client can pace itself instead of meeting 429s."""
    limits = await clients.call("billing", clients.billing.GetLimits, billing_pb2.UserRef(user_id=caller.id))
    return DecimalJSONResponse({"username": caller.username, **limits_body(limits)})


@router.get("/my-transactions", response_model=responses.TransactionPage)
async def my_transactions(
    clients: Clients,
    caller: User,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> DecimalJSONResponse:
    page = await clients.call(
        "billing", clients.billing.ListTransactions,
        billing_pb2.ListTransactionsRequest(user_id=caller.id, page_size=limit, before_id=before),
    )
    return DecimalJSONResponse(
        {
            "transactions": [
                {
                    "id": t.id,
                    "transaction_type": t.transaction_type,
                    "credits_amount": from_wire(t.credits_amount),
                    "balance_after": from_wire(t.balance_after),
                    "notes": t.notes or None,
                    "created_by": t.created_by or None,
                    "hold_id": t.hold_id or None,
                    "purchase_id": t.purchase_id or None,
                    "stripe_event_id": t.stripe_event_id or None,
                    "created_at": t.created_at,
                }
                for t in page.transactions
            ],
            "next_before": page.next_before_id or None,
        }
    )
