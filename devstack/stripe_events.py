"""`fsg local-stripe refund|dispute`: what Stripe's dashboard and webhooks would do, for the local fake.

localstripe refunds a charge but sends no `charge.refunded` event, and has no disputes at all. These commands
do the change at localstripe where it can, then deliver the event Stripe would send (built from the charge as
localstripe now has it), signed with this data directory's webhook secret, to the running edge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import stripe
import typer

from common.local_stripe import LOCAL_SECRET_KEY, webhook_secret
from common.ports import EDGE, stack_port
from devstack.settings import StackSettings

app = typer.Typer(help="Act as Stripe on the local fake (make run without STRIPE_SECRET_KEY).",
                  no_args_is_help=True)


def _client(settings: StackSettings) -> stripe.StripeClient:
    port = stack_port(settings.data_dir, "LOCALSTRIPE_PORT", settings.localstripe_port)
    return stripe.StripeClient(LOCAL_SECRET_KEY, base_addresses={"api": f"http://127.0.0.1:{port}"})


def _edge_port(settings: StackSettings) -> int:
    """PORT when set, else the edge of the stack running on DATA_DIR (its PORT may not be the default)."""
    return stack_port(settings.data_dir, EDGE, settings.edge_port if "edge_port" in settings.model_fields_set else None)


def _charge(client: stripe.StripeClient, payment_intent: str) -> dict[str, Any]:
    latest = client.v1.payment_intents.retrieve(payment_intent).latest_charge
    if latest is None:
        raise typer.BadParameter(f"{payment_intent} has no charge (was it paid?)")
    charge_id = latest if isinstance(latest, str) else latest.id
    return dict(client.v1.charges.retrieve(charge_id).to_dict())


def _deliver(settings: StackSettings, event_type: str, obj: dict[str, Any]) -> None:
    event = {"id": f"evt_local{secrets.token_hex(10)}", "object": "event", "type": event_type,
             "created": int(time.time()), "livemode": False, "data": {"object": obj}}
    body = json.dumps(event).encode()
    stamp = int(time.time())
    secret = webhook_secret(settings.data_dir.resolve())
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    answer = httpx.post(f"http://127.0.0.1:{_edge_port(settings)}/api/webhooks/stripe", content=body, timeout=30,
                        headers={"Stripe-Signature": f"t={stamp},v1={signature}", "Content-Type": "application/json"})
    typer.echo(f"{event_type} {event['id']} → {answer.status_code} {answer.text}")
    if answer.status_code != 200:
        raise typer.Exit(1)


@app.command()
def refund(payment_intent: str, amount: int | None = typer.Option(None, help="cents; default: all")) -> None:
    """Refund a payment at the local Stripe and deliver its charge.refunded event."""
    settings = StackSettings()
    client = _client(settings)
    params: dict[str, Any] = {"payment_intent": payment_intent}
    if amount is not None:
        params["amount"] = amount
    client.v1.refunds.create(params=params)  # type: ignore[arg-type]
    _deliver(settings, "charge.refunded", _charge(client, payment_intent))


@app.command()
def dispute(
    payment_intent: str,
    status: str = typer.Option("needs_response", help="needs_response (opened) | won | lost"),
    amount: int | None = typer.Option(None, help="cents; default: the whole charge"),
) -> None:
    """Deliver a dispute event for a payment (localstripe has no disputes): opened, won or lost."""
    settings = StackSettings()
    charge = _charge(_client(settings), payment_intent)
    dispute_object = {"id": "dp_" + charge["id"].removeprefix("ch_"), "object": "dispute", "charge": charge["id"],
                      "payment_intent": payment_intent, "amount": amount or charge["amount"],
                      "currency": charge["currency"], "status": status}
    kind = "charge.dispute.created" if status == "needs_response" else "charge.dispute.closed"
    _deliver(settings, kind, dispute_object)
