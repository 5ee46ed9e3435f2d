"""Credit purchases: a PaymentIntent out to Stripe, credits in only from verified Stripe events.

    create   → a purchase row (pending), then a PaymentIntent naming it in its metadata (confirmed at once
               when the buyer gave a payment method); a retry with the same Idempotency-Key answers the same
               purchase and never creates a second intent once the first is known.
    event    → verified (signature, timestamp tolerance), then applied once per event id in one transaction
               with whatever it moves (billing_purchase_apply): the order and number of deliveries do not
               change the books.
    check    → each purchase against what Stripe says now (reconcile).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from stripe.params.checkout import SessionCreateParams

from common.idempotency_key import InvalidIdempotencyKey, check_idempotency_key
from common.money import for_json
from services.billing import queries
from services.billing.errors import (
    IdempotencyConflict,
    InvalidBillingRequest,
    PaymentDeclined,
    PaymentProviderError,
    PaymentsNotConfigured,
    UnknownPack,
)
from services.billing.packs import Catalogue, Pack
from services.billing.settings import BillingSettings
from services.billing.stripe_events import EventFacts, MalformedEvent, parse
from services.billing.stripe_gateway import PaymentIntent, StripeGateway

log = logging.getLogger(__name__)

_PAYMENT_METHOD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True, slots=True)
class Purchase:
    id: uuid.UUID
    seq: int
    user_id: int
    pack_id: str
    credits: Decimal
    amount: int
    currency: str
    state: str
    payment_intent_id: str | None
    credited: Decimal
    refunded_amount: int
    disputed_amount: int
    failure_message: str | None
    created_at: str
    updated_at: str
    idempotency_key: str | None = None
    #: Only when just created (or resumed): for the client to finish the payment with Stripe.js.
    client_secret: str = ""
    payment_status: str = ""
    #: Only when just created (or resumed) with hosted checkout: the page to send the buyer to.
    checkout_url: str = ""

    @classmethod
    def from_row(cls, row: asyncpg.Record, intent: PaymentIntent | None = None, *, checkout_url: str = ""
                 ) -> Purchase:
        return cls(
            id=row["id"], seq=row["seq"], user_id=row["user_id"], pack_id=row["pack_id"], credits=row["credits"],
            amount=row["amount"], currency=row["currency"], state=row["state"],
            payment_intent_id=row["payment_intent_id"], credited=row["credited"],
            refunded_amount=row["refunded_amount"], disputed_amount=row["disputed_amount"],
            failure_message=row["failure_message"], created_at=row["created_at"].isoformat(),
            updated_at=row["updated_at"].isoformat(), idempotency_key=row["idempotency_key"],
            client_secret=intent.client_secret if intent else "", payment_status=intent.status if intent else "",
            checkout_url=checkout_url,
        )


@dataclass(frozen=True, slots=True)
class EventResult:
    event_id: str
    type: str
    outcome: str  # applied | duplicate | ignored | not_ours | conflict
    purchase_id: uuid.UUID | None = None
    state: str = ""
    moved: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class StripeDifference:
    """A purchase whose facts differ from what Stripe says about its PaymentIntent now."""

    purchase_id: uuid.UUID
    user_id: int
    payment_intent_id: str
    problem: str


@dataclass(frozen=True, slots=True)
class CheckoutPages:
    """Where Stripe's hosted checkout sends the buyer back to."""

    success_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class TestCard:
    __test__ = False  # not a test class
    number: str


def _payment(payment_method: str, test_card: str, checkout: CheckoutPages | None, *, test_cards: bool
             ) -> str | TestCard | CheckoutPages | None:
    """How the buyer pays, checked: at most one way, each only where it works."""
    if sum(map(bool, (payment_method, test_card, checkout))) > 1:
        raise InvalidBillingRequest("give at most one of paymentMethod, testCard and checkout")
    if payment_method:
        if not payment_method.startswith("pm_") or len(payment_method) > 255 \
                or not set(payment_method) <= _PAYMENT_METHOD:
            raise InvalidBillingRequest("paymentMethod must be a Stripe PaymentMethod id (pm_...)")
        return payment_method
    if test_card:
        if not test_cards:
            raise InvalidBillingRequest("test cards are taken only by the local fake Stripe (make run without "
                                        "STRIPE_SECRET_KEY); pay with Stripe.js or checkout")
        number = test_card.replace(" ", "")
        if not number.isdigit() or not 12 <= len(number) <= 19:
            raise InvalidBillingRequest("testCard must be a card number (12-19 digits)")
        return TestCard(number)
    if checkout is not None:
        if test_cards:
            raise InvalidBillingRequest("hosted checkout needs a real Stripe key; locally, pay with a testCard")
        for name, url in (("successUrl", checkout.success_url), ("cancelUrl", checkout.cancel_url)):
            _check_return_url(name, url)
        return checkout
    return None


def _check_return_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or len(url) > 2048:
        raise InvalidBillingRequest(f"checkout {name} must be an absolute http(s) URL without credentials")


def _metadata(purchase_id: uuid.UUID, user_id: int, pack: Pack) -> dict[str, str]:
    """What Stripe keeps with the payment so that its events name the purchase."""
    return {"purchase_id": str(purchase_id), "user_id": str(user_id), "pack": pack.id}


def checkout_params(purchase_id: uuid.UUID, user_id: int, pack: Pack, pages: CheckoutPages) -> SessionCreateParams:
    """A hosted Checkout Session for one pack. The metadata goes on the session and on the PaymentIntent it
    creates, so both kinds of event name the purchase."""
    metadata = _metadata(purchase_id, user_id, pack)
    return {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": pack.currency, "unit_amount": pack.amount,
            "product_data": {"name": f"{pack.name}: {for_json(pack.credits)} credits"}}}],
        "success_url": pages.success_url,
        "cancel_url": pages.cancel_url,
        "client_reference_id": str(purchase_id),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
    }


class Purchases:
    def __init__(self, pool: asyncpg.Pool, catalogue: Catalogue, gateway: StripeGateway | None, *,
                 publishable_key: str = "", test_cards: bool = False) -> None:
        self._pool = pool
        self.catalogue = catalogue
        self._gateway = gateway
        self.publishable_key = publishable_key
        #: The local fake Stripe: test card numbers are taken (and hosted checkout, which it lacks, is not).
        self.test_cards = test_cards

    async def close(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            raise PaymentsNotConfigured()
        return self._gateway

    # -- buying ------------------------------------------------------------------------------------------
    async def create(self, user_id: int, pack_id: str, *, idempotency_key: str = "", payment_method: str = "",
                     test_card: str = "", checkout: CheckoutPages | None = None) -> Purchase:
        """Start a purchase, paid one of three ways: a payment method from Stripe.js (confirmed now), a test
        card (the local fake Stripe only), or Stripe's hosted checkout (a real Stripe only); with none, the
        client confirms the intent with its client secret."""
        pack = self.catalogue.get(pack_id)
        if pack is None:
            raise UnknownPack()
        how = _payment(payment_method, test_card, checkout, test_cards=self.test_cards)
        gateway = self.gateway
        key = None
        if idempotency_key:
            try:
                key = check_idempotency_key(idempotency_key)
            except InvalidIdempotencyKey as exc:
                raise InvalidBillingRequest(str(exc)) from exc
        await self._pool.execute(queries.ENSURE_ACCOUNT, user_id)
        row = await self._pool.fetchrow(queries.INSERT_PURCHASE, uuid.uuid4(), user_id, key, pack.id, pack.credits,
                                        pack.amount, pack.currency)
        if row is None:  # the key names an earlier purchase: answer it (a retry), if it was for this pack
            row = await self._pool.fetchrow(queries.PURCHASE_BY_KEY, user_id, key)
            if row["pack_id"] != pack.id:
                raise IdempotencyConflict()
            if row["checkout_session_id"] is not None:
                session = await gateway.checkout(row["checkout_session_id"])
                return Purchase.from_row(row, checkout_url=session.url if session else "")
            if row["payment_intent_id"] is not None:
                intent = await gateway.payment_intent(row["payment_intent_id"])
                if intent is None:
                    raise PaymentProviderError("the payment provider no longer knows this purchase's payment")
                return Purchase.from_row(row, intent)
        if isinstance(how, CheckoutPages):
            return await self._start_checkout(row, pack, how)
        method = await gateway.payment_method_for_card(how.number) if isinstance(how, TestCard) else how
        return await self._start_payment(row, pack, method)

    async def _start_checkout(self, row: asyncpg.Record, pack: Pack, pages: CheckoutPages) -> Purchase:
        params = checkout_params(row["id"], row["user_id"], pack, pages)
        session = await self.gateway.create_checkout(params, idempotency_key=f"purchase-{row['id']}-checkout")
        await self._pool.execute(queries.SET_CHECKOUT_SESSION, row["id"], session.id)
        log.info("purchase %s: user %d, pack %s, hosted checkout %s", row["id"], row["user_id"], pack.id, session.id)
        return Purchase.from_row(await self._pool.fetchrow(queries.PURCHASE_BY_ID, row["id"]), checkout_url=session.url)

    async def _start_payment(self, row: asyncpg.Record, pack: Pack, method: str | None) -> Purchase:
        purchase_id = row["id"]
        try:
            intent = await self.gateway.create_payment_intent(
                amount=row["amount"], currency=row["currency"], metadata=_metadata(purchase_id, row["user_id"], pack),
                idempotency_key=f"purchase-{purchase_id}", payment_method=method)
        except PaymentDeclined as exc:
            intent_id, charge_id = _declined(exc.__cause__)
            if intent_id is None and charge_id is not None:
                intent_id = await self.gateway.payment_intent_of_charge(charge_id)
            await self._pool.execute(queries.RECORD_DECLINE, purchase_id, intent_id, exc.message[:500])
            log.info("purchase %s: payment declined", purchase_id)
            raise
        await self._pool.execute(queries.SET_PAYMENT_INTENT, purchase_id, intent.id)
        fresh = await self._pool.fetchrow(queries.PURCHASE_BY_ID, purchase_id)
        log.info("purchase %s: user %d, pack %s, payment %s (%s)", purchase_id, row["user_id"], pack.id, intent.id,
                 intent.status)
        return Purchase.from_row(fresh, intent)

    async def page(self, user_id: int, page_size: int, before_seq: int) -> list[Purchase]:
        rows = await self._pool.fetch(queries.LIST_PURCHASES, user_id, before_seq, page_size)
        return [Purchase.from_row(r) for r in rows]

    # -- events ------------------------------------------------------------------------------------------
    async def handle_event(self, payload: bytes, signature: str) -> EventResult:
        """Verify a webhook delivery, then act on it once (a repeat answers `duplicate` and does nothing)."""
        event = self.gateway.verify(payload, signature)
        try:
            facts = parse(event)
        except MalformedEvent as exc:
            # Signed by Stripe, so not an attack; but nothing we can act on: keep it and say so.
            log.error("stripe event %s: %s", str(event.get("id"))[:64], exc)
            facts = EventFacts(event_id=str(event.get("id")), type=str(event.get("type")), object_id=None)
            return await self._record(facts, "ignored")
        if not facts.handled:
            return await self._record(facts, "ignored")
        purchase = await self._purchase_of(facts)
        if purchase is None:
            log.warning("stripe event %s (%s): no purchase of ours", facts.event_id, facts.type)
            return await self._record(facts, "not_ours")
        if facts.metadata_user_id is not None and facts.metadata_user_id != purchase["user_id"]:
            log.error("stripe event %s names purchase %s for another user: ignored", facts.event_id, purchase["id"])
            return await self._record(facts, "conflict")
        row = await self._pool.fetchrow(
            queries.APPLY_PURCHASE_EVENT, purchase["id"], facts.event_id, facts.type, facts.object_id,
            facts.payment_intent_id, facts.paid_amount, facts.currency, facts.refunded_amount, facts.dispute_id,
            facts.dispute_amount, facts.dispute_status, facts.failure_message,
        )
        outcome = "duplicate" if row["duplicate"] else "applied"
        if row["moved"]:
            log.info("purchase %s: %s moved %s credits (now %s, user %d available %s)", purchase["id"], facts.type,
                     row["moved"], row["state"], purchase["user_id"], row["available"])
        if row["available"] is not None and row["available"] < 0 and row["moved"] < 0:
            log.warning("user %d owes %s credits after %s of purchase %s", purchase["user_id"], -row["available"],
                        facts.type, purchase["id"])
        return EventResult(facts.event_id, facts.type, outcome, purchase["id"], row["state"], row["moved"])

    async def _purchase_of(self, facts: EventFacts) -> asyncpg.Record | None:
        """The purchase an event concerns: by the id in its metadata, by its PaymentIntent, or (an event that
        names only a charge, or an intent we have not stored yet) by asking Stripe for the intent's metadata."""
        if facts.purchase_id is not None:
            row = await self._pool.fetchrow(queries.PURCHASE_BY_ID, facts.purchase_id)
            if row is not None:
                return row
        intent_id = facts.payment_intent_id
        if intent_id is None and facts.charge_id is not None:
            intent_id = await self.gateway.payment_intent_of_charge(facts.charge_id)
        if intent_id is None:
            return None
        row = await self._pool.fetchrow(queries.PURCHASE_BY_PAYMENT_INTENT, intent_id)
        if row is not None:
            return row
        intent = await self.gateway.payment_intent(intent_id)
        named = intent.metadata.get("purchase_id", "") if intent is not None else ""
        try:
            return await self._pool.fetchrow(queries.PURCHASE_BY_ID, uuid.UUID(named)) if named else None
        except ValueError:
            return None

    async def _record(self, facts: EventFacts, outcome: str) -> EventResult:
        first = await self._pool.fetchval(queries.RECORD_STRIPE_EVENT, facts.event_id[:255], facts.type[:255],
                                          facts.object_id, outcome)
        return EventResult(facts.event_id, facts.type, outcome if first is not None else "duplicate")

    # -- reconcile ---------------------------------------------------------------------------------------
    async def check_with_stripe(self, *, days: int | None = None, concurrency: int = 8) -> list[StripeDifference]:
        """Each purchase with a PaymentIntent (changed within `days`, or all) against what Stripe says was
        paid, refunded and disputed."""
        rows = await self._pool.fetch(queries.PURCHASES_TO_CHECK, days)
        gate = asyncio.Semaphore(concurrency)

        async def check(row: asyncpg.Record) -> list[StripeDifference]:
            async with gate:
                intent = await self.gateway.payment_intent(row["payment_intent_id"])
            problems = ["Stripe has no such PaymentIntent"] if intent is None else _differences(row, intent)
            return [StripeDifference(row["id"], row["user_id"], row["payment_intent_id"], p) for p in problems]

        found = await asyncio.gather(*(check(r) for r in rows))
        return [d for each in found for d in each]


def _differences(row: asyncpg.Record, intent: PaymentIntent) -> list[str]:
    problems = []
    if row["mismatch"] is None and row["paid_amount"] != intent.amount_received:
        problems.append(f"Stripe says {intent.amount_received} {intent.currency} was received ({intent.status}); "
                        f"the purchase counts {row['paid_amount']} paid")
    if row["refunded_amount"] != intent.amount_refunded:
        problems.append(f"Stripe says {intent.amount_refunded} was refunded; the purchase counts "
                        f"{row['refunded_amount']}")
    if intent.disputed is not None and intent.disputed != row["ever_disputed"]:
        problems.append(f"Stripe says the charge is {'' if intent.disputed else 'not '}disputed; the purchase "
                        f"{'has' if row['ever_disputed'] else 'has no'} dispute")
    return problems


def _declined(error: BaseException | None) -> tuple[str | None, str | None]:
    """The PaymentIntent and the charge a Stripe card error was about, as far as Stripe says."""
    details: Any = getattr(error, "error", None)

    def named(field: str) -> str | None:
        value: Any = getattr(details, field, None) if details is not None else None
        value = getattr(value, "id", value)  # an expanded object: its id
        return value if isinstance(value, str) and value else None

    return named("payment_intent"), named("charge")


def purchases_from_settings(pool: asyncpg.Pool, settings: BillingSettings) -> Purchases:
    """Purchases as configured: Stripe (or localstripe, by STRIPE_API_BASE) when a secret key is set."""
    gateway = None
    if settings.stripe_secret_key is not None:
        webhook_secret = settings.stripe_webhook_secret
        gateway = StripeGateway(
            settings.stripe_secret_key.get_secret_value(),
            webhook_secret.get_secret_value() if webhook_secret is not None else None,
            api_base=settings.stripe_api_base, tolerance_seconds=settings.stripe_webhook_tolerance_seconds)
    test_cards = settings.stripe_test_cards
    if test_cards and settings.stripe_secret_key is not None and \
            settings.stripe_secret_key.get_secret_value().startswith(("sk_live_", "rk_live_")):
        raise ValueError("STRIPE_TEST_CARDS is for the local fake Stripe only, never with a live key")
    return Purchases(pool, Catalogue.load(settings.packs_file), gateway,
                     publishable_key=settings.stripe_publishable_key, test_cards=test_cards)
