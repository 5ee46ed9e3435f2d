"""GET|PUT /api/my-alerts: a user's threshold (exact, their own or the default) and webhook, with the signing
secret answered once; bad input is a 4xx JSON answer that changes nothing."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.alerts.support import put_alerts
from tests.helpers import UserFactory

SECRET = re.compile(r"whsec_[0-9a-f]{64}")


def get_alerts(client: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/my-alerts", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return dict(json.loads(response.text, parse_float=Decimal))


def test_defaults_then_an_exact_threshold_and_back(client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=80)
    assert get_alerts(client, user.headers) == {
        "username": user.username, "threshold": None, "defaultThreshold": 50, "effectiveThreshold": 50,
        "webhookUrl": None, "balance": 80, "armed": True, "unlimited": False,
    }
    changed = put_alerts(client, user.headers, threshold=12.3456)
    assert changed["message"] == "Alerts updated"
    assert changed["threshold"] == changed["effectiveThreshold"] == Decimal("12.3456")
    # Read from the JSON text, never through a float: 1e2 is exactly 100, 0.1 exactly a tenth.
    assert put_alerts(client, user.headers, threshold=1e2)["threshold"] == 100
    assert put_alerts(client, user.headers, threshold=0.1)["threshold"] == Decimal("0.1")
    assert put_alerts(client, user.headers, threshold=0)["effectiveThreshold"] == 0
    back = put_alerts(client, user.headers, threshold=None)
    assert back["threshold"] is None and back["effectiveThreshold"] == 50
    assert get_alerts(client, user.headers)["threshold"] is None


def test_the_signing_secret_is_shown_once_and_rotates(client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=10)
    first = put_alerts(client, user.headers, webhookUrl="https://hooks.example.test/fsg")
    secret = first["webhookSecret"]
    assert SECRET.fullmatch(secret) and first["webhookUrl"] == "https://hooks.example.test/fsg"
    assert "webhookSecret" not in get_alerts(client, user.headers)
    # Another URL keeps the secret (and does not show it); a threshold change leaves the webhook alone.
    moved = put_alerts(client, user.headers, webhookUrl="http://localhost:8080/hook")
    assert "webhookSecret" not in moved and moved["webhookUrl"] == "http://localhost:8080/hook"
    assert put_alerts(client, user.headers, threshold=5)["webhookUrl"] == "http://localhost:8080/hook"
    rotated = put_alerts(client, user.headers, rotateSecret=True)
    assert SECRET.fullmatch(rotated["webhookSecret"]) and rotated["webhookSecret"] != secret
    removed = put_alerts(client, user.headers, webhookUrl=None)
    assert removed["webhookUrl"] is None and "webhookSecret" not in removed
    again = put_alerts(client, user.headers, webhookUrl="http://127.0.0.1:9/x")
    assert SECRET.fullmatch(again["webhookSecret"]) and again["webhookSecret"] not in (secret, rotated["webhookSecret"])


BAD_BODIES: list[tuple[str, int]] = [
    ('{"threshold": -1}', 422),
    ('{"threshold": 1.00001}', 422),  # five places: 1/1000 of a cent
    ('{"threshold": 100000001}', 422),
    ('{"threshold": "10"}', 422),
    ('{"threshold": true}', 422),
    ('{"threshold": NaN}', 400),
    ('{"threshold": 1e999}', 400),
    ('{"threshold": {}}', 422),
    ('{"webhookUrl": "ftp://hooks.example.test/x"}', 422),
    ('{"webhookUrl": "http://hooks.example.test/x"}', 422),  # http only to localhost
    ('{"webhookUrl": "https://user:secret@hooks.example.test/x"}', 422),
    ('{"webhookUrl": "https://"}', 422),
    ('{"webhookUrl": "hooks.example.test/x"}', 422),
    ('{"webhookUrl": "https://hooks.example.test/a b"}', 422),
    ('{"webhookUrl": "https://hooks.example.test:99999/"}', 422),
    ('{"webhookUrl": "https://hooks.example.test/#frag"}', 422),
    ('{"webhookUrl": "https://hooks.example.test/' + "a" * 2100 + '"}', 422),
    ('{"webhookUrl": 5}', 422),
    ('{"rotateSecret": "yes"}', 422),
    ('{"threshold": 5, "extra": 1}', 422),
    ('[]', 422),
    ('"threshold"', 422),
    ('{"threshold": 5', 400),
    ('{"rotateSecret": true}', 400),  # no webhook to rotate the secret of
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES, ids=[f"{i}" for i in range(len(BAD_BODIES))])
async def test_bad_input_is_a_4xx_and_changes_nothing(client: httpx.Client, users: UserFactory,
                                                      db: asyncpg.Connection, body: str, status: int) -> None:
    user = users.create(credits=10)
    put_alerts(client, user.headers, threshold=7)
    before = get_alerts(client, user.headers)
    row_before = await db.fetchrow("SELECT * FROM credit_alert_settings WHERE user_id = $1", user.id)
    response = client.put("/api/my-alerts", content=body,
                          headers={**user.headers, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert get_alerts(client, user.headers) == before
    assert await db.fetchrow("SELECT * FROM credit_alert_settings WHERE user_id = $1", user.id) == row_before


def test_a_key_is_required_and_each_user_sees_their_own(client: httpx.Client, users: UserFactory) -> None:
    assert client.get("/api/my-alerts").status_code == 401
    assert client.put("/api/my-alerts", json={"threshold": 1}).status_code == 401
    one, other = users.create(credits=10), users.create(credits=10)
    put_alerts(client, one.headers, threshold=3)
    assert get_alerts(client, other.headers)["threshold"] is None
