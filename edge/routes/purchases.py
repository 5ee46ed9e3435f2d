"""Buying credits: the packs on sale, starting a purchase, the buyer's purchases, and Stripe's webhook.

Credits never arrive from these routes' answers: only a Stripe event, verified by billing, adds them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from common.money import from_wire
from edge import responses
from edge.deps import Clients, IdempotencyKeyHeader
from edge.json import DecimalJSONResponse
from edge.request_json import JsonRoute
from edge.schemas import Cursor, PurchaseBody
from edge.security import User
from protos import billing_pb2

router = APIRouter(prefix="/api", tags=["purchases"], route_class=JsonRoute)
#: Billing may call Stripe while answering these (creating an intent, or asking whose a charge is).
STRIPE_CALL_SECONDS = 30.0
#: The webhook reads its body as bytes, exactly as Stripe signed it, so it is not a JSON route.
webhooks = APIRouter(prefix="/api/webhooks", tags=["purchases"])


def _purchase(p: billing_pb2.Purchase) -> dict[str, Any]:
    return {
        "purchaseId": p.id, "pack": p.pack_id, "credits": from_wire(p.credits), "amount": p.amount,
        "currency": p.currency, "state": p.state, "credited": from_wire(p.credited),
        "refundedAmount": p.refunded_amount, "disputedAmount": p.disputed_amount,
        "failureMessage": p.failure_message or None, "paymentIntentId": p.payment_intent_id or None,
        "createdAt": p.created_at, "updatedAt": p.updated_at,
    }


@router.get("/credit-packs", response_model=responses.CreditPacks)
async def credit_packs(clients: Clients) -> DecimalJSONResponse:
    """The packs on sale (no key needed: a price list is public)."""
    reply = await clients.call("billing", clients.billing.ListPacks, billing_pb2.ListPacksRequest())
    packs = [{"id": p.id, "name": p.name, "credits": from_wire(p.credits), "bonusCredits": from_wire(p.bonus_credits),
              "amount": p.amount, "currency": p.currency} for p in reply.packs]
    return DecimalJSONResponse({"packs": packs, "publishableKey": reply.publishable_key or None,
                                "testMode": reply.test_mode})


@router.post("/purchases", status_code=201, response_model=responses.StartedPurchase)
async def create_purchase(body: PurchaseBody, clients: Clients, caller: User,
                          idempotency_key: IdempotencyKeyHeader = None) -> DecimalJSONResponse:
    """Start buying a pack: a Stripe PaymentIntent (confirmed at once when `paymentMethod` is given). The
    credits arrive when Stripe reports the payment; `GET /api/my-purchases` shows how it stands."""
    checkout = (billing_pb2.Checkout(success_url=body.checkout.success_url, cancel_url=body.checkout.cancel_url)
                if body.checkout is not None else None)
    request = billing_pb2.CreatePurchaseRequest(user_id=caller.id, pack_id=body.pack,
                                                idempotency_key=idempotency_key or "",
                                                payment_method=body.payment_method or "",
                                                test_card=body.test_card or "", checkout=checkout)
    p = await clients.call("billing", clients.billing.CreatePurchase, request, timeout=STRIPE_CALL_SECONDS)
    return DecimalJSONResponse(
        {"purchaseId": p.id, "clientSecret": p.client_secret, "amount": p.amount, "currency": p.currency,
         "credits": from_wire(p.credits), "pack": p.pack_id, "paymentStatus": p.payment_status, "state": p.state,
         "checkoutUrl": p.checkout_url or None},
        status_code=201)


@router.get("/my-purchases", response_model=responses.PurchasePage)
async def my_purchases(
    clients: Clients,
    caller: User,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Cursor = 0,
) -> DecimalJSONResponse:
    page = await clients.call("billing", clients.billing.ListPurchases, billing_pb2.ListPurchasesRequest(
        user_id=caller.id, page_size=limit, before_seq=before))
    return DecimalJSONResponse({"purchases": [_purchase(p) for p in page.purchases],
                                "nextBefore": page.next_before_seq or None})


@webhooks.post("/stripe", response_model=responses.StripeEventReceived)
async def stripe_webhook(
    request: Request,
    clients: Clients,
    stripe_signature: Annotated[str, Header(alias="Stripe-Signature", max_length=4096)] = "",
) -> DecimalJSONResponse:
    """Stripe's events. Billing verifies the signature (400 if it does not verify, and nothing changes) and
    acts on each event id once; any 2xx tells Stripe to stop retrying, a 5xx makes it retry later."""
    payload = await request.body()
    reply = await clients.call("billing", clients.billing.HandleStripeEvent,
                               billing_pb2.StripeEventRequest(payload=payload, signature=stripe_signature),
                               timeout=STRIPE_CALL_SECONDS)
    return DecimalJSONResponse({"received": True, "eventId": reply.event_id, "outcome": reply.outcome})
