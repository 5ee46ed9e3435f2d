"""Alert webhooks: the signing secret, the signature and the POST.

A receiver verifies a delivery as Stripe's are verified (README "Low-credit alerts"): the `FSG-Signature`
header is `t=<unix seconds>,v1=<hex>`, where hex = HMAC-SHA256(key = the secret as UTF-8, message =
"<t>." + the raw body). Compare in constant time, and refuse a `t` more than `TOLERANCE_SECONDS` from the
receiver's clock (a replayed old delivery). Every attempt is signed afresh, so `t` is the attempt's time;
the body's `id` is the event's and stays the same across attempts (deliveries are at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import httpx2

from services.billing.alerts.events import Alert

SIGNATURE_HEADER = "FSG-Signature"
EVENT_HEADER = "FSG-Event-Id"
#: What we advise receivers to allow between `t` and their clock.
TOLERANCE_SECONDS = 300
#: A signing secret: a recognisable prefix and 256 random bits (the log filter redacts runs of 40+ hex).
SECRET_PREFIX = "whsec_"


class WebhookFailed(Exception):
    """The receiver did not answer 2xx; the message is what the delivery records as its last error."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `FSG-Signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def post(client: httpx2.AsyncClient, url: str, secret: str, alert: Alert, timeout: float) -> None:
    """POST the signed event; raises WebhookFailed (any answer but 2xx: redirects are not followed) or
    httpx2's transport errors."""
    body = alert.body()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "film-script-generator-alerts/1",
        EVENT_HEADER: alert.event_id,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    response = await client.post(url, content=body, headers=headers, timeout=timeout)
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"the receiver answered HTTP {response.status_code}")
