"""Claude failures (injected by the simulator through `X-Sim-Fault`) and concurrent calls: a failed call is
never charged, its hold is voided, one failed usage row records it, and the ledger reconciles."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from services.billing.repository import BillingRepository
from tests.generation.test_endpoints import (
    MINIMUM_HOLD,
    PRICES,
    assert_charged,
    generation_calls,
    get_project,
    make_project,
    parse,
    post,
    price_of,
    snapshot,
)
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

#: fault → (HTTP status, error type in the body, Retry-After expected)
FAULTS: dict[str, tuple[int, str, bool]] = {
    "server_error": (502, "upstream_error", False),
    "rate_limit": (503, "rate_limited", True),
    "overloaded": (503, "overloaded", True),
    "hang": (504, "timeout", False),
    "bad_schema": (502, "invalid_output", False),
}
#: Endpoints each fault is tried on (hang waits out the retry budget, so it gets fewer).
FAULT_ENDPOINTS = {
    "hang": ["/api/generate-structure", "/api/generate-scene"],
}
DEFAULT_FAULT_ENDPOINTS = ["/api/generate-structure", "/api/generate-structure-custom",
                           "/api/generate-plot-points-for-act", "/api/generate-scenes", "/api/generate-scene",
                           "/api/generate-dialogue"]


async def assert_reconciled(repo: BillingRepository, *users: TestUser) -> None:
    ids = {u.id for u in users}
    report = await repo.reconcile()
    assert report.of(*ids) == [] and report.conservation.holds


async def assert_failed_call_logged(db: asyncpg.Connection, user: TestUser, response: httpx.Response,
                                    endpoint: str, fault: str, project_path: str | None) -> None:
    status, error_type, retry_after = FAULTS[fault]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = parse(response)
    assert body["error"] == "Generation failed"
    assert body["type"] == error_type
    assert "No credits were charged" in body["message"]
    assert "usage" not in body and "X-Credits-Charged" not in response.headers
    if retry_after:
        assert int(response.headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in response.headers

    row = await db.fetchrow("SELECT * FROM usage_logs WHERE request_id = $1", body["requestId"])
    assert row is not None
    assert row["user_id"] == user.id and row["endpoint"] == endpoint
    assert row["response_success"] is False
    assert row["error_message"] and error_type in row["error_message"]
    assert row["credits_cost"] == 0
    assert row["model_used"] == PRICES.default
    assert row["project_path"] == project_path
    assert row["latency_ms"] is not None and row["latency_ms"] >= 0
    if fault == "bad_schema":
        # Claude answered (and billed us) but the answer failed validation: the provider cost is recorded
        # for the operator, the user pays nothing.
        assert row["input_tokens"] > 0
        price = price_of({"model": row["model_used"], "input_tokens": row["input_tokens"],
                          "output_tokens": row["output_tokens"]})
        assert price > 0 and row["provider_cost"] == price
    else:
        assert (row["input_tokens"], row["output_tokens"], row["provider_cost"]) == (0, 0, 0)
    resolution = await db.fetchrow(
        """SELECT r.outcome, r.amount, h.amount AS held FROM credit_hold_resolutions r
           JOIN credit_holds h ON h.id = r.hold_id WHERE r.hold_id = $1""", row["hold_id"])
    assert resolution["outcome"] == "voided" and resolution["amount"] == 0
    assert resolution["held"] >= MINIMUM_HOLD[endpoint]


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_claude_fault_charges_nothing(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                            repo: BillingRepository, fault: str) -> None:
    user = users.create(credits=100)
    path = make_project(client, user, scenes=1)
    project_before = get_project(client, user, path)
    calls = generation_calls(path)
    for endpoint in FAULT_ENDPOINTS.get(fault, DEFAULT_FAULT_ENDPOINTS):
        url, body = calls[endpoint]
        before = await snapshot(db, user.id)
        response = post(client, user, url, body, **{"X-Sim-Fault": fault})
        takes_project = endpoint not in ("/api/generate-structure", "/api/generate-structure-custom")
        await assert_failed_call_logged(db, user, response, endpoint, fault, path if takes_project else None)
        after = await snapshot(db, user.id)
        assert after.available == before.available, endpoint
        assert after.held == 0, endpoint
        assert after.usage_rows == before.usage_rows + 1, endpoint
        assert after.holds == before.holds + 1, endpoint
        assert after.projects == before.projects, endpoint  # nothing saved, no project created
    assert get_project(client, user, path) == project_before
    stats = parse(client.get("/api/my-stats", headers=user.headers))
    assert stats["user"]["credits_held"] == 0
    assert stats["user"]["credits_remaining"] == after.available
    await assert_reconciled(repo, user)


async def test_slow_claude_still_succeeds_and_is_charged(client: httpx.Client, users: UserFactory,
                                                         db: asyncpg.Connection, repo: BillingRepository) -> None:
    user = users.create(credits=100)
    path = make_project(client, user, scenes=1)
    for endpoint in ("/api/generate-scene", "/api/generate-dialogue"):
        url, body = generation_calls(path)[endpoint]
        before = await snapshot(db, user.id)
        response = post(client, user, url, body, **{"X-Sim-Fault": "slow:300"})
        await assert_charged(db, user, response, before.available, endpoint)
    await assert_reconciled(repo, user)


async def test_fault_then_retry_succeeds(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                         repo: BillingRepository) -> None:
    """The documented client behaviour: after a 503 with Retry-After, the same call succeeds and is charged once."""
    user = users.create(credits=100)
    path = make_project(client, user)
    url, body = generation_calls(path)["/api/generate-plot-points-for-act"]
    failed = post(client, user, url, body, **{"X-Sim-Fault": "rate_limit"})
    assert failed.status_code == 503 and failed.headers["Retry-After"]
    before = await snapshot(db, user.id)
    retried = post(client, user, url, body)
    await assert_charged(db, user, retried, before.available, "/api/generate-plot-points-for-act")
    rows = await db.fetch("SELECT response_success, credits_cost FROM usage_logs WHERE user_id = $1 "
                          "AND endpoint = '/api/generate-plot-points-for-act' ORDER BY id", user.id)
    assert [r["response_success"] for r in rows] == [False, True]
    await assert_reconciled(repo, user)


async def test_concurrent_scene_calls_never_overdraw(stack: Stack, users: UserFactory, client: httpx.Client,
                                                     db: asyncpg.Connection, repo: BillingRepository) -> None:
    """20 simultaneous generate-scene calls whose holds (≈9 credits each with this model) fit only one or two
    at a time in a ~20-credit balance: every call either succeeds and is charged or gets a 402."""
    user = users.create(credits=20)
    path = make_project(client, user)
    initial = (await snapshot(db, user.id)).available
    body = {"model": "claude-fable-5-1"}

    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60,
                                 limits=httpx.Limits(max_connections=20)) as http:
        responses = await asyncio.gather(*(
            http.post(f"/api/generate-scene/{path}/setup", headers=user.headers, json=body) for _ in range(20)
        ))

    ok = [parse(r) for r in responses if r.status_code == 200]
    refused = [parse(r) for r in responses if r.status_code == 402]
    assert len(ok) + len(refused) == 20, [r.text for r in responses if r.status_code not in (200, 402)]
    assert ok, "the first hold always fits"
    assert refused, "the balance cannot pay for 20 of these calls"
    for doc in refused:
        assert doc["error"] == "Insufficient credits"
        assert doc["message"] == "Please purchase more credits to continue"
        # Not `remaining < required`: billing reads `remaining` after the refused reserve, so a concurrent
        # commit can already have returned credits (see the report on BillingRepository.reserve).
        assert doc["remaining"] >= 0 and doc["required"] >= MINIMUM_HOLD["/api/generate-scene"]
    charged = Decimal(0)
    for doc in ok:
        usage: dict[str, Any] = doc["usage"]
        assert usage["model"] == "claude-fable-5-1"
        assert usage["credits_charged"] == price_of(usage)
        assert usage["credits_remaining"] >= 0
        charged += usage["credits_charged"]

    final = await snapshot(db, user.id)
    assert final.available == initial - charged
    assert final.available >= 0 and final.held == 0
    negative = await db.fetchval("SELECT count(*) FROM credit_transactions WHERE user_id = $1 AND balance_after < 0",
                                 user.id)
    assert negative == 0
    rows = await db.fetch("SELECT credits_cost, response_success FROM usage_logs WHERE user_id = $1 "
                          "AND endpoint = '/api/generate-scene'", user.id)
    assert len(rows) == len(ok) and all(r["response_success"] for r in rows)
    assert sum((r["credits_cost"] for r in rows), Decimal(0)) == charged
    # Refused calls placed no hold: one hold per success (plus the project's structure call).
    assert final.holds == len(ok) + 1
    # Every success appended its own scene: indexes 0..n-1, no lost update.
    assert sorted(doc["sceneIndex"] for doc in ok) == list(range(len(ok)))
    assert len(get_project(client, user, path)["scenes"]["setup"]) == len(ok)
    stats = parse(client.get("/api/my-stats", headers=user.headers))
    assert Decimal(stats["user"]["credits_remaining"]) == final.available
    await assert_reconciled(repo, user)
