"""Faults between the edge and billing: billing going away (or restarting gracefully) loses no credits and
no usage record, and the caller gets a clear JSON 5xx. These restart real processes, so they run last.
Crashes (kill -9) and PostgreSQL outages under load are in tests/reliability/."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from services.billing.repository import BillingRepository
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack


def _project(client: httpx.Client, user: TestUser) -> str:
    response = client.post("/api/generate-structure", headers=user.headers,
                           json={"storyInput": {"title": "Fault Lines"}, "template": "three-act"})
    assert response.status_code == 200, response.text
    return str(response.json()["projectPath"])


def _call_in_background(
    client: httpx.Client, user: TestUser, path: str, fault: str
) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    """Start a generate-scene call with a simulator fault (e.g. slow:1500) so a test can break things mid-call."""
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["response"] = client.post(f"/api/generate-scene/{path}/setup",
                                         headers={**user.headers, "X-Sim-Fault": fault})

    worker = threading.Thread(target=call)
    worker.start()
    return worker, result


async def _reconciled(stack: Stack, user_id: int) -> bool:
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=1)
    try:
        return (await BillingRepository(pool).reconcile()).of(user_id) == []
    finally:
        await pool.close()


def _held(stats: dict[str, Any]) -> Decimal:
    return Decimal(str(stats["user"]["credits_held"]))


async def test_billing_down_before_the_hold_holds_nothing(stack: Stack, client: httpx.Client,
                                                          users: UserFactory, db: asyncpg.Connection) -> None:
    user = users.create(credits=50)
    path = _project(client, user)
    balance = users.balance(user)
    stack.stop_process("billing")
    try:
        response = client.post(f"/api/generate-scene/{path}/setup", headers=user.headers)
        assert response.status_code == 503
        assert response.json()["error"] == "Service unavailable"
        assert client.get("/readyz").status_code == 503
    finally:
        stack.restart("billing")
    assert users.balance(user) == balance
    assert await db.fetchval("SELECT count(*) FROM usage_logs WHERE user_id = $1", user.id) == 1
    assert await _reconciled(stack, user.id)


async def test_billing_restart_during_a_call_still_settles_exactly_once(
    stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=50)
    path = _project(client, user)
    balance = users.balance(user)
    worker, result = _call_in_background(client, user, path, "slow:1500")
    time.sleep(0.7)  # the hold is placed and Claude is "thinking"
    stack.stop_process("billing")
    time.sleep(1.5)  # Claude answers while billing is away: the edge keeps retrying the commit
    stack.restart("billing")
    worker.join(60)
    response = result["response"]
    assert response.status_code == 200, response.text
    charged = Decimal(response.headers["X-Credits-Charged"])
    assert charged > 0
    assert users.balance(user) == balance - charged
    assert _held(users.stats(user)) == 0
    rows = await db.fetch("SELECT credits_cost, response_success FROM usage_logs WHERE user_id = $1 "
                          "AND endpoint = '/api/generate-scene'", user.id)
    assert [(r["credits_cost"], r["response_success"]) for r in rows] == [(charged, True)]
    assert await _reconciled(stack, user.id)
