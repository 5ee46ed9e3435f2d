"""Two edges and two billing services on one database (edge → billing, edge2 → billing2; both share auth
and generation): hundreds of concurrent metered calls and grants for one user never overdraw, never
charge twice, leave no hold open, and `fsg-billing reconcile` finds nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.helpers import TestUser
from tests.reliability.support import (
    STRUCTURE_BODY,
    assert_books_balance,
    assert_charged_once,
    assert_reconciled,
    outcome,
    own_stack,
    parse,
    user_factory,
)
from tests.stack import Stack

EDGES = ("edge", "edge2")
CALLS = 500
#: Client-side concurrency: enough to keep both edges busy, sane on a 2-core machine.
CONCURRENCY = 100
#: generate-structure holds at least 10 credits and costs about 0.25: 500 calls would cost about twice
#: this, so the balance runs out (and, with 100 in flight, the 10-credit holds refuse many sooner).
BALANCE = 60


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, "replicas", {}) as stack:
        stack.add_replica("billing2", "billing")
        stack.add_replica("edge2", "edge", {"BILLING_ADDR": stack.addr("billing2")})
        yield stack


@pytest.fixture(scope="module")
def admin_client(replicas: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replicas.edge_url, timeout=30) as http:
        yield http


@pytest.fixture
async def db(replicas: Stack) -> AsyncIterator[asyncpg.Connection]:
    async with replicas.database() as conn:
        yield conn


class Watcher:
    """Polls the user's account while the run goes on, keeping the lowest balance seen."""

    def __init__(self, dsn: str, user_id: int) -> None:
        self.dsn, self.user_id = dsn, user_id
        self.lowest_available: Decimal | None = None
        self.lowest_held: Decimal | None = None
        self.samples = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                row = await conn.fetchrow("SELECT available, held FROM credit_accounts WHERE user_id = $1",
                                          self.user_id)
                available, held = row["available"], row["held"]
                self.lowest_available = available if self.lowest_available is None else min(
                    available, self.lowest_available)
                self.lowest_held = held if self.lowest_held is None else min(held, self.lowest_held)
                self.samples += 1
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()


async def _run(stack: Stack, jobs: list[tuple[str, str, dict[str, str], dict[str, object]]],
               user: TestUser) -> tuple[list[httpx.Response], Watcher]:
    """Send every (edge, path, headers, body) job with bounded concurrency while a watcher samples the balance."""
    watcher = Watcher(stack.dsn, user.id)
    watching = asyncio.create_task(watcher.run())
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    # A generous hang guard: a call that takes this long is a failure, not a slow success.
    clients = {edge: httpx.AsyncClient(base_url=stack.url(edge), timeout=120, limits=limits) for edge in EDGES}

    async def send(edge: str, path: str, headers: dict[str, str], body: dict[str, object]) -> httpx.Response:
        async with gate:
            return await clients[edge].post(path, headers=headers, json=body)

    try:
        responses = await asyncio.gather(*(send(*job) for job in jobs))
    finally:
        watcher.stop()
        await watching
        for client in clients.values():
            await client.aclose()
    assert watcher.samples > 0
    return list(responses), watcher


async def _assert_calls_accounted(db: asyncpg.Connection, responses: list[httpx.Response]) -> Decimal:
    """Every 200 was charged exactly once; every 402 left no hold and no usage row. Returns the charges."""
    charged = Decimal(0)
    for response in responses:
        request_id = response.headers["X-Request-ID"]
        if response.status_code == 200:
            amount = Decimal(response.headers["X-Credits-Charged"])
            assert amount > 0 and parse(response)["usage"]["credits_charged"] == amount
            await assert_charged_once(db, request_id, amount)
            charged += amount
        else:
            assert response.status_code == 402, response.text
            assert parse(response)["error"] == "Insufficient credits"
            got = await outcome(db, request_id)
            assert (got.holds, got.usage_rows) == (0, 0), request_id
    return charged


async def test_concurrent_calls_through_two_edges_never_overdraw(
    replicas: Stack, admin_client: httpx.Client, db: asyncpg.Connection
) -> None:
    user = user_factory(replicas, admin_client).create(credits=BALANCE, prefix="replica")
    jobs = [(EDGES[i % 2], "/api/generate-structure", user.headers, STRUCTURE_BODY) for i in range(CALLS)]
    responses, watcher = await _run(replicas, jobs, user)

    by_status = {s: sum(1 for r in responses if r.status_code == s) for s in {r.status_code for r in responses}}
    assert set(by_status) == {200, 402}, [r.text for r in responses if r.status_code not in (200, 402)][:5]
    # Both edges (and so both billing replicas) served successes.
    for i, edge in enumerate(EDGES):
        assert any(r.status_code == 200 for r in responses[i::2]), edge

    charged = await _assert_calls_accounted(db, responses)
    assert 0 < charged <= BALANCE
    assert watcher.lowest_available is not None and watcher.lowest_available >= 0
    assert watcher.lowest_held is not None and watcher.lowest_held >= 0
    final = await assert_books_balance(db, user.id)
    assert final.granted == BALANCE and final.charged == charged
    assert final.available == BALANCE - charged
    successes = by_status[200]
    assert await db.fetchval("SELECT count(*) FROM usage_logs WHERE user_id = $1", user.id) == successes
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user.id) == successes
    assert_reconciled(replicas)


async def test_grants_racing_spends_through_two_edges_add_up(
    replicas: Stack, admin_client: httpx.Client, db: asyncpg.Connection
) -> None:
    """Grants (each sent twice with one Idempotency-Key, once through each edge) interleaved with spends:
    every key grants once, and what is left is exactly what was granted minus what was charged."""
    initial, grant, grants = 20, Decimal(5), 60
    user = user_factory(replicas, admin_client).create(credits=initial, prefix="racer")
    admin = {"X-API-Key": replicas.admin_key}
    keys = [str(uuid.uuid4()) for _ in range(grants)]
    grant_body: dict[str, object] = {"username": user.username, "credits": int(grant), "notes": "race"}
    jobs: list[tuple[str, str, dict[str, str], dict[str, object]]] = []
    for i in range(300):
        jobs.append((EDGES[i % 2], "/api/generate-structure", user.headers, STRUCTURE_BODY))
        if i % 5 == 0:
            key = keys[i // 5]
            for edge in EDGES:  # the same grant retried through the other replica
                jobs.append((edge, "/api/admin/grant-credits", {**admin, "Idempotency-Key": key}, grant_body))
    responses, watcher = await _run(replicas, jobs, user)

    spends = [r for r in responses if r.url.path == "/api/generate-structure"]
    grant_answers = [r for r in responses if r.url.path == "/api/admin/grant-credits"]
    assert len(grant_answers) == 2 * grants
    assert all(r.status_code == 200 for r in grant_answers), [r.text for r in grant_answers if r.status_code != 200]
    # Of each key's two answers exactly one granted and one replayed, with the same transaction.
    by_key: dict[int, list[bool]] = {}
    for answer in grant_answers:
        body = parse(answer)
        by_key.setdefault(body["transaction_id"], []).append(body["replayed"])
    assert len(by_key) == grants and all(sorted(v) == [False, True] for v in by_key.values())

    charged = await _assert_calls_accounted(db, spends)
    assert any(r.status_code == 200 for r in spends)
    assert watcher.lowest_available is not None and watcher.lowest_available >= 0
    final = await assert_books_balance(db, user.id)
    granted = initial + grant * grants
    assert final.granted == granted and final.charged == charged
    assert final.available == granted - charged
    assert_reconciled(replicas)
