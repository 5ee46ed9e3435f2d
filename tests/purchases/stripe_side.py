"""Stripe's side of a purchase, for tests: the buyer's browser (what Stripe.js does with a client secret),
Stripe's dashboard (refunds), Stripe's webhooks (held, replayed, reordered, or written and signed by the test
for the events localstripe never sends), all against the stack's own localstripe."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import stripe

from common.local_stripe import LOCAL_SECRET_KEY
from tests.stack import Stack

T = TypeVar("T")
PAYS = "4242424242424242"
DECLINED = "4000000000000341"


def wait_for(condition: Callable[[], T | None], timeout: float = 15, what: str = "condition") -> T:
    """Poll until `condition` answers something truthy (its answer), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed as Stripe documents it (HMAC-SHA256 of "<t>.<body>")."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A Stripe event as Stripe would send it, for the kinds localstripe never sends (refunds, disputes)."""
    return {"id": f"evt_test{uuid.uuid4().hex[:20]}", "object": "event", "type": event_type,
            "created": int(time.time()), "livemode": False, "data": {"object": obj}}


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as it left Stripe: the body and its signature, exactly."""

    body: bytes
    signature: str

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.post("/api/webhooks/stripe", content=self.body,
                           headers={"Stripe-Signature": self.signature, "Content-Type": "application/json"})


class LocalStripe:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = stripe.StripeClient(LOCAL_SECRET_KEY, base_addresses={"api": stack.stripe_url})

    def card(self, number: str = PAYS) -> str:
        """A PaymentMethod for a test card (what Stripe.js's createPaymentMethod gives a page)."""
        method = self.api.v1.payment_methods.create(params={"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
        return str(method.id)

    def pay(self, payment_intent_id: str, number: str = PAYS) -> str:
        """Confirm an intent with a card, as Stripe.js does with the client secret; its status after."""
        self.api.v1.payment_intents.update(payment_intent_id, params={"payment_method": self.card(number)})
        return str(self.api.v1.payment_intents.confirm(payment_intent_id).status)

    def intent(self, payment_intent_id: str) -> dict[str, Any]:
        return dict(self.api.v1.payment_intents.retrieve(payment_intent_id).to_dict())

    def charge(self, payment_intent_id: str) -> dict[str, Any]:
        latest = self.intent(payment_intent_id)["latest_charge"]
        charge_id = latest["id"] if isinstance(latest, dict) else latest
        return dict(self.api.v1.charges.retrieve(charge_id).to_dict())

    def refund(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund at Stripe (as from its dashboard); localstripe sends no event for it, Stripe would send
        charge.refunded: `refunded_event` builds that from the charge as Stripe now has it."""
        params: dict[str, Any] = {"payment_intent": payment_intent_id}
        if amount is not None:
            params["amount"] = amount
        self.api.v1.refunds.create(params=params)  # type: ignore[arg-type]
        return self.charge(payment_intent_id)

    def refunded_event(self, payment_intent_id: str) -> dict[str, Any]:
        return event("charge.refunded", self.charge(payment_intent_id))

    def delivery(self, evt: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None) -> Delivery:
        body = json.dumps(evt).encode()
        return Delivery(body, sign(body, secret or self.stack.webhook_secret, timestamp))

    def register_webhook(self, url: str) -> None:
        response = httpx.post(f"{self.stack.stripe_url}/_config/webhooks/fsg",
                              data={"url": url, "secret": self.stack.webhook_secret})
        assert response.status_code == 200, response.text

    @contextmanager
    def held_webhooks(self) -> Iterator[WebhookTap]:
        """Stripe's deliveries go to the test instead of the edge while this lasts: the test forwards them,
        late, twice, reordered or concurrently. Afterwards they go to the edge again."""
        tap = WebhookTap()
        self.register_webhook(tap.url)
        try:
            yield tap
        finally:
            self.register_webhook(f"{self.stack.edge_url}/api/webhooks/stripe")
            tap.close()


class WebhookTap:
    """An HTTP endpoint that keeps every delivery it receives (and answers 200, as a healthy endpoint)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        tap = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                tap.deliveries.append(Delivery(body, self.headers.get("Stripe-Signature", "")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, event_type: str, object_id: str, timeout: float = 15) -> Delivery:
        """The delivery of `event_type` about `object_id` (localstripe sends a second after the change)."""
        def found() -> Delivery | None:
            return next((d for d in self.deliveries
                         if d.event["type"] == event_type and d.event["data"]["object"]["id"] == object_id), None)
        return wait_for(found, timeout, f"{event_type} for {object_id}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
