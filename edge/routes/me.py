"""Self-service: a user's own stats, ledger, rate limits and low-credit alerts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from common.money import from_wire, to_wire
from edge import responses
from edge.clients import ServiceClients
from edge.deps import Clients
from edge.json import DecimalJSONResponse
from edge.rate_limits import limits_body
from edge.request_json import JsonRoute
from edge.routes.stats import usage_stats_body
from edge.schemas import AlertsBody, Cursor
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
    before: Cursor = 0,
) -> DecimalJSONResponse:
    return DecimalJSONResponse(await transactions_body(clients, caller.id, limit, before))


async def transactions_body(clients: ServiceClients, user_id: int, limit: int, before: int) -> dict[str, Any]:
    """A page of a user's ledger, newest first (the caller's own, or any user's for an admin)."""
    page = await clients.call(
        "billing", clients.billing.ListTransactions,
        billing_pb2.ListTransactionsRequest(user_id=user_id, page_size=limit, before_id=before),
    )
    return {
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


def alerts_body(username: str, settings: billing_pb2.AlertSettings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": username,
        "threshold": from_wire(settings.threshold) if settings.HasField("threshold") else None,
        "defaultThreshold": from_wire(settings.default_threshold),
        "effectiveThreshold": from_wire(settings.effective_threshold),
        "webhookUrl": settings.webhook_url or None,
        "balance": from_wire(settings.balance),
        "armed": settings.armed,
        "unlimited": settings.unlimited,
    }
    if settings.webhook_secret:
        body["webhookSecret"] = settings.webhook_secret
    return body


#: The answers may carry the webhook's signing secret: no cache keeps them.
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/my-alerts", response_model=responses.AlertSettings)
async def my_alerts(clients: Clients, caller: User) -> DecimalJSONResponse:
    """The caller's low-credit alert: threshold (own and default), webhook, whether it is armed."""
    settings = await clients.call("billing", clients.billing.GetAlerts, billing_pb2.UserRef(user_id=caller.id))
    return DecimalJSONResponse(alerts_body(caller.username, settings), headers=_NO_STORE)


@router.put("/my-alerts", response_model=responses.AlertSettings)
async def set_my_alerts(body: AlertsBody, clients: Clients, caller: User) -> DecimalJSONResponse:
    """Set the caller's threshold (absent = keep, null = the default, 0 = off) and webhook (absent = keep, null =
    none). Setting a first webhook URL, or `rotateSecret: true`, answers the new signing secret, once."""
    update = billing_pb2.SetAlertsRequest(user_id=caller.id, rotate_secret=body.rotate_secret)
    if "threshold" in body.model_fields_set:
        update.threshold.CopyFrom(billing_pb2.AlertThreshold(use_default=True) if body.threshold is None
                                  else billing_pb2.AlertThreshold(credits=to_wire(body.threshold)))
    if "webhook_url" in body.model_fields_set:
        update.webhook.CopyFrom(billing_pb2.AlertWebhook(remove=True) if body.webhook_url is None
                                else billing_pb2.AlertWebhook(url=body.webhook_url))
    settings = await clients.call("billing", clients.billing.SetAlerts, update)
    return DecimalJSONResponse({"message": "Alerts updated", **alerts_body(caller.username, settings)},
                               headers=_NO_STORE)
