"""Billing's one door to Stripe, through the official SDK: PaymentIntents out, verified events in.

Pointed at real Stripe when STRIPE_SECRET_KEY is a real key, or at `localstripe` (the local fake that
`make run` starts without one) through STRIPE_API_BASE. Stripe's errors become billing's domain errors here,
with messages safe to show a buyer (never a key).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import stripe
from stripe.params.checkout import SessionCreateParams

from services.billing.errors import InvalidSignature, PaymentDeclined, PaymentProviderError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str
    client_secret: str
    amount: int
    #: What Stripe took: amount_received where Stripe reports it (localstripe does not), else the amount
    #: once the intent succeeded.
    amount_received: int
    currency: str
    metadata: dict[str, str]
    #: The latest charge's refunded amount and whether it is disputed (None: no charge yet).
    amount_refunded: int
    disputed: bool | None
    failure_message: str | None

    @classmethod
    def from_stripe(cls, intent: Any) -> PaymentIntent:
        pi: dict[str, Any] = intent.to_dict()
        charge = pi.get("latest_charge")
        charge = charge if isinstance(charge, dict) else None
        received = pi.get("amount_received")
        if received is None:
            received = pi["amount"] if pi["status"] == "succeeded" else 0
        error = pi.get("last_payment_error") or {}
        return cls(
            id=pi["id"], status=pi["status"], client_secret=pi.get("client_secret") or "", amount=pi["amount"],
            amount_received=received, currency=pi["currency"], metadata=dict(pi.get("metadata") or {}),
            amount_refunded=int(charge.get("amount_refunded") or 0) if charge else 0,
            disputed=bool(charge.get("disputed")) if charge and "disputed" in charge else None,
            failure_message=error.get("message"),
        )


@dataclass(frozen=True, slots=True)
class Checkout:
    id: str
    url: str  # empty once the session is complete or expired


class StripeGateway:
    def __init__(self, secret_key: str, webhook_secret: str | None, *, api_base: str | None = None,
                 tolerance_seconds: int = 300, timeout_seconds: float = 20) -> None:
        self._webhook_secret = webhook_secret
        self._tolerance = tolerance_seconds
        self._http = stripe.AIOHTTPClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None, http_client=self._http,
            max_network_retries=2,
        )

    async def close(self) -> None:
        await self._http.close_async()

    async def create_payment_intent(self, *, amount: int, currency: str, metadata: dict[str, str],
                                    idempotency_key: str, payment_method: str | None) -> PaymentIntent:
        """A PaymentIntent for the pack; with a payment method, confirmed at once (server-side confirmation)."""
        params: dict[str, Any] = {"amount": amount, "currency": currency, "metadata": metadata}
        if payment_method:
            params.update(payment_method=payment_method, confirm=True)
        pi = await self._call(self._client.v1.payment_intents.create_async(
            params=params, options={"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return PaymentIntent.from_stripe(pi)

    async def payment_method_for_card(self, number: str) -> str:
        """A PaymentMethod for a test card, made server side: what Stripe.js does in a page, done here only for
        the local fake Stripe (Purchases refuses it otherwise). A made-up expiry and CVC, as test cards take."""
        method = await self._call(self._client.v1.payment_methods.create_async(params={
            "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"}}))
        return str(method.id)

    async def create_checkout(self, params: SessionCreateParams, idempotency_key: str) -> Checkout:
        """A hosted Checkout Session (Stripe's own payment page)."""
        session = await self._call(self._client.v1.checkout.sessions.create_async(
            params=params, options={"idempotency_key": idempotency_key}))
        return Checkout(id=session.id, url=session.url or "")

    async def checkout(self, session_id: str) -> Checkout | None:
        session = await self._find(self._client.v1.checkout.sessions.retrieve_async(session_id))
        return Checkout(id=session.id, url=session.url or "") if session is not None else None

    async def payment_intent(self, payment_intent_id: str) -> PaymentIntent | None:
        """The intent with its latest charge, or None if Stripe has no such intent (not ours)."""
        pi = await self._find(self._client.v1.payment_intents.retrieve_async(
            payment_intent_id, params={"expand": ["latest_charge"]}))
        return PaymentIntent.from_stripe(pi) if pi is not None else None

    async def payment_intent_of_charge(self, charge_id: str) -> str | None:
        charge = await self._find(self._client.v1.charges.retrieve_async(charge_id))
        intent = charge.to_dict().get("payment_intent") if charge is not None else None
        return intent if isinstance(intent, str) and intent else None

    async def _find(self, request: Any) -> Any:
        try:
            return await request
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            log.warning("stripe refused a lookup: %s", exc.code or type(exc).__name__)
            raise PaymentProviderError() from exc
        except stripe.StripeError as exc:
            log.warning("stripe call failed: %s (http %s)", type(exc).__name__, exc.http_status)
            raise PaymentProviderError() from exc

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except stripe.CardError as exc:
            raise PaymentDeclined(exc.user_message or "Your card was declined") from exc
        except stripe.InvalidRequestError as exc:
            # A payment method that does not exist or cannot be used: the buyer's input, not our fault.
            log.info("stripe refused a request: %s", exc.code or type(exc).__name__)
            raise PaymentDeclined(exc.user_message or "The payment method was refused") from exc
        except stripe.StripeError as exc:
            log.warning("stripe call failed: %s (http %s)", type(exc).__name__, exc.http_status)
            raise PaymentProviderError() from exc

    def verify(self, payload: bytes, signature: str) -> dict[str, Any]:
        """The event, if its Stripe-Signature is valid for our endpoint secret and its timestamp is within the
        tolerance (the SDK's verifier); InvalidSignature otherwise, whatever is wrong."""
        if not self._webhook_secret:
            log.error("a Stripe event arrived but STRIPE_WEBHOOK_SECRET is not set: refused")
            raise InvalidSignature()
        try:
            stripe.WebhookSignature.verify_header(payload, signature, self._webhook_secret, self._tolerance)
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidSignature() from exc
        if not isinstance(event, dict):
            raise InvalidSignature()
        return event
