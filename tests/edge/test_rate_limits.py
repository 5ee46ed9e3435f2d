"""Per-user rate limits through the REST edge: 429 with Retry-After (distinct from 402), nothing held or
logged for a refused call, the admin routes that set limits, and the admin's exemption."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import asyncpg
import httpx

from services.billing.repository import BillingRepository
from tests.generation.test_endpoints import STORY
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

STRUCTURE = {"storyInput": STORY, "template": "three-act"}


def set_limits(client: httpx.Client, admin_headers: dict[str, str], username: str, **body: Any) -> dict[str, Any]:
    response = client.put(f"/api/admin/users/{username}/limits", json=body, headers=admin_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _trace(db: asyncpg.Connection, user: TestUser) -> dict[str, int]:
    """Everything a metered call can leave behind, counted."""
    row = await db.fetchrow(
        """SELECT (SELECT count(*) FROM credit_holds WHERE user_id = $1) AS holds,
                  (SELECT count(*) FROM credit_transactions WHERE user_id = $1) AS ledger,
                  (SELECT count(*) FROM usage_logs WHERE user_id = $1) AS usage""", user.id)
    return dict(row)


def assert_429(response: httpx.Response, limit: str, max_retry: int) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "Rate limit exceeded" and body["limit"] == limit
    assert "retry after" in body["message"]
    retry_after = int(response.headers["Retry-After"])
    assert body["retry_after"] == retry_after and 1 <= retry_after <= max_retry
    assert "usage" not in body and "X-Credits-Charged" not in response.headers
    return retry_after


# -- admin routes -----------------------------------------------------------------------------------

def test_admin_sets_limits_defaults_when_null(client: httpx.Client, users: UserFactory,
                                              admin_headers: dict[str, str]) -> None:
    user = users.create()
    url = f"/api/admin/users/{user.username}/limits"
    fresh = client.get(url, headers=admin_headers)
    assert fresh.status_code == 200
    assert fresh.json() == {"username": user.username, "requests_per_minute": None, "max_concurrent": None,
                            "effective": {"requests_per_minute": 60, "max_concurrent": 5},
                            "exempt": False, "in_flight": 0}

    changed = set_limits(client, admin_headers, user.username, requests_per_minute=30)
    assert changed["requests_per_minute"] == 30 and changed["max_concurrent"] is None
    assert changed["effective"] == {"requests_per_minute": 30, "max_concurrent": 5}
    off = set_limits(client, admin_headers, user.username, max_concurrent=0)
    assert off["requests_per_minute"] == 30, "a field left out is kept"
    assert off["max_concurrent"] == 0 and off["effective"]["max_concurrent"] == 0
    default = set_limits(client, admin_headers, user.username, requests_per_minute=None, max_concurrent=None)
    assert default["requests_per_minute"] is None and default["effective"]["requests_per_minute"] == 60
    assert default["max_concurrent"] is None and default["effective"]["max_concurrent"] == 5

    mine = client.get("/api/my-limits", headers=user.headers)
    assert mine.status_code == 200 and mine.json()["effective"] == {"requests_per_minute": 60, "max_concurrent": 5}

    set_limits(client, admin_headers, user.username, requests_per_minute=7, max_concurrent=2)
    for bad in [{"requests_per_minute": -1}, {"max_concurrent": -5}, {"requests_per_minute": 1.5},
                {"requests_per_minute": "3"}, {"max_concurrent": True}, {"requests_per_minute": 6001},
                {"rpm": 3}, [1]]:
        response = client.put(url, json=bad, headers=admin_headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"] == "Invalid request"
    unchanged = client.get(url, headers=admin_headers).json()
    assert (unchanged["requests_per_minute"], unchanged["max_concurrent"]) == (7, 2), "refused input changes nothing"

    assert client.get("/api/admin/users/no_such_user_xyz/limits", headers=admin_headers).status_code == 404
    assert client.put("/api/admin/users/no_such_user_xyz/limits", json={}, headers=admin_headers).status_code == 404
    for method in ("GET", "PUT"):
        forbidden = client.request(method, url, headers=user.headers, json={"max_concurrent": 0})
        assert forbidden.status_code == 403 and forbidden.json()["error"] == "Admin access required"
        assert client.request(method, url, json={"max_concurrent": 0}).status_code == 401
    assert client.get(url, headers=admin_headers).json()["max_concurrent"] == 2


# -- requests per minute ----------------------------------------------------------------------------

async def test_requests_per_minute_429_then_allowed_after_retry_after(
        stack: Stack, client: httpx.Client, users: UserFactory, admin_headers: dict[str, str],
        db: asyncpg.Connection, repo: BillingRepository) -> None:
    rpm = 6  # one token every 10 s
    emission = 60 / rpm
    user = users.create(credits=1000)
    set_limits(client, admin_headers, user.username, requests_per_minute=rpm, max_concurrent=0)
    before = await _trace(db, user)
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as http:
        started = time.monotonic()
        responses = await asyncio.gather(*[
            http.post("/api/generate-structure", headers=user.headers, json=STRUCTURE) for _ in range(rpm + 3)])
        elapsed = time.monotonic() - started
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code != 200]
    assert rpm <= len(ok) <= rpm + math.floor(elapsed / emission)
    assert limited
    for response in limited:
        assert_429(response, "requests_per_minute", math.ceil(emission))

    # A 429 leaves nothing behind: one hold, three ledger rows (hold, release, usage), one usage row per success.
    after = await _trace(db, user)
    assert after == {"holds": before["holds"] + len(ok), "ledger": before["ledger"] + 3 * len(ok),
                     "usage": before["usage"] + len(ok)}

    refused = client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE)
    wait = assert_429(refused, "requests_per_minute", math.ceil(emission))
    await asyncio.sleep(wait)
    again = client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE)
    assert again.status_code == 200, again.text
    assert (await repo.reconcile()).of(user.id) == []


async def test_402_is_not_a_rate_limit_and_takes_no_token(client: httpx.Client, users: UserFactory,
                                                          admin_headers: dict[str, str]) -> None:
    user = users.create(credits=1)
    set_limits(client, admin_headers, user.username, requests_per_minute=1)
    for _ in range(3):
        poor = client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE)
        assert poor.status_code == 402, poor.text
        assert poor.json()["error"] == "Insufficient credits" and "Retry-After" not in poor.headers
    granted = client.post("/api/admin/grant-credits", headers=admin_headers,
                          json={"username": user.username, "credits": 100})
    assert granted.status_code == 200
    paid = client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE)
    assert paid.status_code == 200, "the 402s took none of the minute's single token"
    assert_429(client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE),
               "requests_per_minute", 60)


# -- concurrency ------------------------------------------------------------------------------------

async def test_max_concurrent_with_slow_calls(stack: Stack, client: httpx.Client, users: UserFactory,
                                              admin_headers: dict[str, str], db: asyncpg.Connection,
                                              repo: BillingRepository) -> None:
    cap = 2
    user = users.create(credits=1000)
    set_limits(client, admin_headers, user.username, requests_per_minute=0, max_concurrent=cap)
    slow = {**user.headers, "X-Sim-Fault": "slow:1500"}
    before = await _trace(db, user)
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as http:
        in_flight = [asyncio.create_task(http.post("/api/generate-structure", headers=slow, json=STRUCTURE))
                     for _ in range(cap)]
        deadline = time.monotonic() + 30
        while await db.fetchval("SELECT holds_open FROM credit_accounts WHERE user_id = $1", user.id) < cap:
            assert time.monotonic() < deadline, "the slow calls never held their slots"
            await asyncio.sleep(0.01)
        extra = await asyncio.gather(*[http.post("/api/generate-structure", headers=slow, json=STRUCTURE)
                                       for _ in range(4)])
        first = await asyncio.gather(*in_flight)
    for response in extra:
        assert assert_429(response, "max_concurrent", 1) == 1
    assert [r.status_code for r in first] == [200] * cap
    assert await _trace(db, user) == {"holds": before["holds"] + cap, "ledger": before["ledger"] + 3 * cap,
                                      "usage": before["usage"] + cap}, "the refused calls left nothing behind"
    limits = client.get("/api/my-limits", headers=user.headers).json()
    assert limits["in_flight"] == 0
    assert client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE).status_code == 200
    assert (await repo.reconcile()).of(user.id) == []


# -- the admin is exempt ----------------------------------------------------------------------------

async def test_admin_is_exempt(stack: Stack, client: httpx.Client, admin_headers: dict[str, str]) -> None:
    limits = set_limits(client, admin_headers, "admin", requests_per_minute=1, max_concurrent=1)
    try:
        assert limits["exempt"] is True
        slow = {**admin_headers, "X-Sim-Fault": "slow:500"}
        async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as http:
            responses = await asyncio.gather(*[http.post("/api/generate-structure", headers=slow, json=STRUCTURE)
                                               for _ in range(3)])
        for response in responses:
            assert response.status_code == 200, response.text
            assert response.headers["X-Credits-Remaining"] == "unlimited"
    finally:
        set_limits(client, admin_headers, "admin", requests_per_minute=None, max_concurrent=None)
