"""What a verified Stripe event says about a purchase's payment, as facts billing_purchase_apply adds up.

Only the fields billing acts on are read, each from where Stripe puts it for that event type; an event of
any other type is acknowledged and ignored. A fact left None carries no news.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

#: A dispute's Stripe status → how billing counts it: open (credits held back), won (given back), lost.
_DISPUTE_STATUS = {"won": "won", "warning_closed": "won", "lost": "lost"}

PAYMENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_FAILED = "payment_intent.payment_failed"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                            "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"})
#: Hosted checkout: a completed (or later succeeded) session says what was paid; one that failed or expired
#: says why nothing was.
CHECKOUT_PAID = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
CHECKOUT_UNPAID = frozenset({"checkout.session.async_payment_failed", "checkout.session.expired"})
HANDLED = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED, CHARGE_REFUNDED}) | DISPUTE_EVENTS | CHECKOUT_PAID \
    | CHECKOUT_UNPAID


class MalformedEvent(ValueError):
    """A signed event without the fields its type must have."""


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: str
    type: str
    object_id: str | None
    #: How to find the purchase: the purchase id we put in the PaymentIntent's metadata, else its id.
    purchase_id: uuid.UUID | None = None
    metadata_user_id: int | None = None
    payment_intent_id: str | None = None
    #: A dispute may name only its charge (older API versions); billing then asks Stripe for the charge.
    charge_id: str | None = None
    paid_amount: int | None = None
    currency: str | None = None
    refunded_amount: int | None = None
    dispute_id: str | None = None
    dispute_amount: int | None = None
    dispute_status: str | None = None
    failure_message: str | None = None

    @property
    def handled(self) -> bool:
        return self.type in HANDLED


def _str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{name} is not a non-negative integer")
    return value


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _metadata(obj: dict[str, Any]) -> tuple[uuid.UUID | None, int | None]:
    found = obj.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    purchase = _uuid(str(metadata["purchase_id"])) if metadata.get("purchase_id") else None
    user = metadata.get("user_id")
    return purchase, int(user) if isinstance(user, str) and user.isdigit() else None


def parse(event: dict[str, Any]) -> EventFacts:
    """The facts of a verified event (MalformedEvent if a handled type lacks what it must carry)."""
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or not isinstance(event_type, str):
        raise MalformedEvent("an event needs an evt_ id and a type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent("an event needs data.object")
    base = EventFacts(event_id=event_id, type=event_type, object_id=_str(obj, "id"))
    if event_type not in HANDLED:
        return base
    purchase_id, user_id = _metadata(obj)
    base = replace(base, purchase_id=purchase_id, metadata_user_id=user_id)
    if event_type == PAYMENT_SUCCEEDED:
        received = obj.get("amount_received")
        paid = _int(obj, "amount_received") if received is not None else _int(obj, "amount")
        return replace(base, payment_intent_id=_str(obj, "id"), paid_amount=paid, currency=_str(obj, "currency"))
    if event_type == PAYMENT_FAILED:
        error = obj.get("last_payment_error")
        message = error.get("message") if isinstance(error, dict) else None
        reason = message if isinstance(message, str) and message else "the payment failed"
        return replace(base, payment_intent_id=_str(obj, "id"), failure_message=reason[:500])
    if event_type in CHECKOUT_PAID | CHECKOUT_UNPAID:
        if base.purchase_id is None and isinstance(obj.get("client_reference_id"), str):
            base = replace(base, purchase_id=_uuid(obj["client_reference_id"]))
        intent = _str(obj, "payment_intent")
        if event_type in CHECKOUT_UNPAID:
            reason = "the checkout expired unpaid" if event_type.endswith("expired") else "the payment failed"
            return replace(base, payment_intent_id=intent, failure_message=reason)
        if obj.get("payment_status") != "paid":  # completed, but the money is yet to come (a bank debit)
            return replace(base, payment_intent_id=intent)
        return replace(base, payment_intent_id=intent, paid_amount=_int(obj, "amount_total"),
                       currency=_str(obj, "currency"))
    if event_type == CHARGE_REFUNDED:
        # A refund means the charge was paid: a refund that arrives before the success still says so.
        captured = obj.get("amount_captured")
        paid = _int(obj, "amount_captured") if captured is not None else _int(obj, "amount")
        return replace(base, payment_intent_id=_str(obj, "payment_intent"), charge_id=_str(obj, "id"),
                       paid_amount=paid if obj.get("paid", True) else 0, currency=_str(obj, "currency"),
                       refunded_amount=_int(obj, "amount_refunded"))
    # A dispute.
    if base.object_id is None:
        raise MalformedEvent("a dispute needs an id")
    status = obj.get("status")
    return replace(base, payment_intent_id=_str(obj, "payment_intent"), charge_id=_str(obj, "charge"),
                   dispute_id=base.object_id, dispute_amount=_int(obj, "amount"),
                   dispute_status=_DISPUTE_STATUS.get(status, "open") if isinstance(status, str) else "open")
