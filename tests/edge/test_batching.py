"""Batched service calls under load (EDGE_BATCH_MAX): concurrent metered requests share Prepare, Reserve and
Commit round trips, and every request is still answered, charged and logged exactly as alone, including a
refusal in the middle of a batch."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import httpx

from services.billing.repository import BillingRepository
from tests.edge.test_rate_limits import STRUCTURE, set_limits
from tests.helpers import UserFactory, metric
from tests.stack import Stack

CALLS = 24


def batch_totals(client: httpx.Client) -> dict[str, tuple[float, float]]:
    """(items, batches) per batched call so far, from the edge's /metrics."""
    return {call: (metric(client, "fsg_service_batch_items_sum", call=call),
                   metric(client, "fsg_service_batch_items_count", call=call))
            for call in ("prepare", "reserve", "commit")}


async def test_concurrent_calls_share_batches_and_each_is_charged_exactly(
    stack: Stack, client: httpx.Client, users: UserFactory, admin_headers: dict[str, str],
    db: asyncpg.Connection, repo: BillingRepository,
) -> None:
    rich = users.create(credits=10_000)
    # 25 credits: two structure calls' holds fit at a time, so some of the calls in a batch are refused.
    poor = users.create(credits=25)
    for user in (rich, poor):
        set_limits(client, admin_headers, user.username, requests_per_minute=0, max_concurrent=0)
    before = batch_totals(client)

    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as http:
        answers = await asyncio.gather(*(
            http.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
            for _ in range(CALLS) for user in (rich, poor)
        ))

    after = batch_totals(client)
    for call in ("prepare", "reserve", "commit"):
        items, batches = after[call][0] - before.get(call, (0, 0))[0], after[call][1] - before.get(call, (0, 0))[1]
        assert items >= CALLS and batches >= 1
        if call != "commit":  # 48 requests at once: their Prepares and Reserves cannot all have gone alone
            assert items > batches, f"{call}: {items} calls in {batches} batches"

    for user in (rich, poor):
        mine = [a for a in answers if a.request.headers["X-API-Key"] == user.api_key]
        ok = [a for a in mine if a.status_code == 200]
        assert all(a.status_code in (200, 402) for a in mine), [a.text for a in mine if a.status_code >= 500]
        charged = sum(Decimal(a.headers["X-Credits-Charged"]) for a in ok)
        start = Decimal(10_000 if user is rich else 25)
        assert users.balance(user) == start - charged >= 0
        rows = await db.fetch("SELECT request_id, credits_cost, response_success FROM usage_logs WHERE user_id = $1",
                              user.id)
        assert sorted(r["request_id"] for r in rows) == sorted(a.json()["requestId"] for a in ok)
        assert sum(r["credits_cost"] for r in rows) == charged and all(r["response_success"] for r in rows)
        if user is rich:
            assert len(ok) == CALLS
        else:
            assert 1 <= len(ok) < CALLS  # refused calls in the same batches as accepted ones
            refusal = next(a for a in mine if a.status_code == 402).json()
            assert Decimal(str(refusal["required"])) >= 10
    report = await repo.reconcile()
    assert report.clean, report
