"""PostgreSQL stopped and started again under a steady load of metered calls and reads: during the outage
every request fails fast with a 503 JSON (a hang is a failure), every service recovers without a restart,
and no ledger or usage row is lost or duplicated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.reliability.support import (
    STRUCTURE_BODY,
    assert_books_balance,
    assert_charged_once,
    assert_not_charged,
    assert_reconciled,
    own_stack,
    parse,
    user_factory,
    wait_for,
)
from tests.stack import Stack

#: The edge's hold lifetime here: its generation deadline (10 s) plus its settle-retry window (20 s).
HOLD_TTL = 30
#: A request that starts while the database is down must be answered within this (a hang guard).
FAIL_FAST_SECONDS = 10.0
#: Any request at all: one in flight when the database went away may retry its settlement for the
#: edge's settle window (20 s) before answering.
HANG_GUARD_SECONDS = 45.0
OUTAGE_SECONDS = 6.0
METERED_WORKERS, READ_WORKERS = 6, 2


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = {"EDGE_GENERATION_TIMEOUT_SECONDS": "10", "EDGE_HOLD_MARGIN_SECONDS": "0"}
    with own_stack(tmp_path_factory, "db-outage", settings) as stack:
        yield stack


@dataclass(frozen=True)
class Sample:
    path: str
    phase: str  # before | outage | after: when the request was sent
    started: float
    elapsed: float
    response: httpx.Response


class Load:
    """Metered calls and reads in a loop until stopped, each answer kept with the phase it was sent in."""

    def __init__(self, stack: Stack, api_key: str) -> None:
        self.headers = {"X-API-Key": api_key}
        self.phase = "before"
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._http = httpx.AsyncClient(base_url=stack.edge_url, timeout=HANG_GUARD_SECONDS)
        self._tasks: list[asyncio.Task[None]] = []

    async def once(self, method: str, path: str, fault: str = "slow:300") -> None:
        phase, started = self.phase, time.monotonic()
        if method == "POST":
            response = await self._http.post(path, headers={**self.headers, "X-Sim-Fault": fault},
                                             json=STRUCTURE_BODY)
        else:
            response = await self._http.get(path, headers=self.headers)
        self.samples.append(Sample(path, phase, started, time.monotonic() - started, response))

    async def _worker(self, requests: list[tuple[str, str]]) -> None:
        i = 0
        while not self._stop.is_set():
            await self.once(*requests[i % len(requests)])
            i += 1
            await asyncio.sleep(0.05)

    def start(self) -> None:
        metered = [("POST", "/api/generate-structure")]
        reads = [("GET", "/api/my-stats"), ("GET", "/readyz"), ("GET", "/api/projects")]
        self._tasks += [asyncio.create_task(self._worker(metered)) for _ in range(METERED_WORKERS)]
        self._tasks += [asyncio.create_task(self._worker(reads)) for _ in range(READ_WORKERS)]

    def probe(self, fault: str = "slow:300") -> None:
        """One more metered call of its own (workers may all be waiting on calls cut off by the outage)."""
        self._tasks.append(asyncio.create_task(self.once("POST", "/api/generate-structure", fault)))

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._http.aclose()

    def by(self, phase: str, path: str | None = None) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase and (path is None or s.path == path)]


async def _ready(stack: Stack) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            return (await http.get(f"{stack.edge_url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def test_database_outage_under_load_fails_fast_and_recovers_without_restarts(outage_stack: Stack) -> None:
    stack = outage_stack
    assert stack.postgres is not None
    with httpx.Client(base_url=stack.edge_url, timeout=30) as admin:
        user = user_factory(stack, admin).create(credits=100_000, prefix="outage")
    pids = {name: proc.pid for name, proc in stack.processes.items() if name != "simulator"}
    load = Load(stack, user.api_key)
    load.start()
    try:
        await wait_for(lambda: _some(load, "before"), 60, "successful calls before the outage")
        await asyncio.to_thread(stack.postgres.stop)
        load.phase = "outage"
        for _ in range(int(OUTAGE_SECONDS / 0.5)):
            load.probe()
            await asyncio.sleep(0.5)
        load.phase = "after"
        await asyncio.to_thread(stack.postgres.start)
        # Every service notices by itself: no process is restarted.
        await wait_for(lambda: _ready(stack), 60, "readyz 200 after PostgreSQL came back")
        await wait_for(lambda: _some(load, "after"), 60, "successful calls after the outage")
    finally:
        await load.stop()
    assert {name: proc.pid for name, proc in stack.processes.items() if name != "simulator"} == pids
    assert all(proc.poll() is None for proc in stack.processes.values())

    # During the outage: 503 JSON, fast, for metered calls and reads alike. Readiness follows within the
    # services' database watchdog interval (2 s), so /readyz only has to say "not ready" before it ends.
    readiness = [s.response.status_code for s in load.by("outage", "/readyz")]
    assert 503 in readiness, readiness
    during = [s for s in load.by("outage") if s.path != "/readyz"]
    assert len(load.by("outage", "/api/generate-structure")) >= OUTAGE_SECONDS, "too few metered calls in the outage"
    for sample in during:
        response = sample.response
        assert response.status_code == 503, (sample.path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in parse(response)
        assert sample.elapsed < FAIL_FAST_SECONDS, (sample.path, sample.elapsed)

    # Everything answered within the hang guard, with JSON, and only 200 or 503.
    metered = [s for s in load.samples if s.path == "/api/generate-structure"]
    for sample in load.samples:
        assert sample.response.status_code in (200, 503), (sample.path, sample.response.text)
        parse(sample.response)

    # Nothing lost, nothing doubled: wait for holds from calls cut off mid-flight to settle or expire.
    async with stack.database() as conn:
        await _assert_ledger(conn, user.id, metered)
    assert_reconciled(stack)


async def _some(load: Load, phase: str) -> bool:
    return sum(1 for s in load.by(phase, "/api/generate-structure") if s.response.status_code == 200) >= 3


async def _assert_ledger(conn: asyncpg.Connection, user_id: int, metered: list[Sample]) -> None:
    async def settled() -> bool:
        return not await conn.fetchval(
            """SELECT count(*) FROM credit_holds h WHERE h.user_id = $1 AND NOT EXISTS
               (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)""", user_id)

    await wait_for(settled, HOLD_TTL + 30, "every hold to be posted, voided or expired")
    seen = set()
    charged = Decimal(0)
    for sample in metered:
        request_id = sample.response.headers.get("X-Request-ID")
        if request_id is None:
            # Refused before metering began (the key could not be checked): no hold can exist for it; the
            # subset check below would catch one.
            assert sample.response.status_code == 503, sample.response.text
            continue
        seen.add(request_id)
        if sample.response.status_code == 200:
            amount = Decimal(sample.response.headers["X-Credits-Charged"])
            await assert_charged_once(conn, request_id, amount)
            charged += amount
        else:
            await assert_not_charged(conn, request_id)
    # No hold or usage row that no answer accounts for, none with two usage rows, and each hold's ledger
    # rows complete: hold + release, plus usage when posted with a charge.
    holds = await conn.fetch(
        """SELECT h.request_id, r.outcome, r.amount,
                  (SELECT count(*) FROM usage_logs u WHERE u.hold_id = h.id) AS usage_rows,
                  (SELECT array_agg(t.transaction_type ORDER BY t.id) FROM credit_transactions t
                    WHERE t.hold_id = h.id) AS ledger
           FROM credit_holds h JOIN credit_hold_resolutions r ON r.hold_id = h.id WHERE h.user_id = $1""", user_id)
    assert {h["request_id"] for h in holds} <= seen
    for h in holds:
        assert h["usage_rows"] == 1, h
        expected = ["hold", "release", "usage"] if h["amount"] > 0 else ["hold", "release"]
        assert list(h["ledger"]) == expected, h
    duplicates = await conn.fetchval(
        "SELECT count(*) FROM (SELECT request_id FROM usage_logs WHERE user_id = $1 "
        "GROUP BY request_id HAVING count(*) > 1) d", user_id)
    assert duplicates == 0
    books = await assert_books_balance(conn, user_id)
    assert books.charged == charged


async def _terminate_the_waiter(locker: asyncpg.Connection, what: str) -> None:
    """Wait until a statement waits on a lock `locker` holds, then terminate its backend: what a fast
    shutdown, an operator or a failover does to a running statement (the server ends the session in the
    middle of it). Deterministic where stopping the whole server is not: at a fast shutdown the blocked
    statement may win the lock in the instant between the locker's session ending and its own."""
    query = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"

    async def blocked() -> bool:
        return await locker.fetchval(query) is not None

    await wait_for(blocked, 30, what)
    assert await locker.fetchval("SELECT pg_terminate_backend($1)", await locker.fetchval(query))


async def _lock_account(locker: asyncpg.Connection, user_id: int) -> None:
    await locker.execute("SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE", user_id)


async def test_reserve_cut_off_mid_query_is_a_503(outage_stack: Stack) -> None:
    """A Reserve whose statement is killed is "the database is unavailable" (503, retry), not a 502."""
    stack = outage_stack
    with httpx.Client(base_url=stack.edge_url, timeout=30) as admin:
        user = user_factory(stack, admin).create(credits=100, prefix="cutreserve")
    load = Load(stack, user.api_key)
    locker = await asyncpg.connect(stack.dsn)
    try:
        async with locker.transaction():
            await _lock_account(locker, user.id)
            load.probe("none")
            await _terminate_the_waiter(locker, "the Reserve to wait on the row lock")
    finally:
        await locker.close()
        await load.stop()
    [sample] = load.samples
    assert sample.response.status_code == 503, sample.response.text
    assert parse(sample.response)["error"] == "Service unavailable"
    async with stack.database() as conn:
        got = await assert_not_charged(conn, sample.response.headers["X-Request-ID"])
        assert got.holds == 0
        await assert_books_balance(conn, user.id)
    assert_reconciled(stack)


async def test_commit_cut_off_mid_query_is_retried_and_charged_once(outage_stack: Stack) -> None:
    """A Commit whose statement is killed is retried like any outage (idempotent by hold id): the call
    succeeds and is charged exactly once, instead of giving up and letting the hold expire."""
    stack = outage_stack
    with httpx.Client(base_url=stack.edge_url, timeout=30) as admin:
        user = user_factory(stack, admin).create(credits=100, prefix="cutcommit")
    async with stack.database() as conn:
        load = Load(stack, user.api_key)
        # The hold is placed first (its Reserve must not be the statement that blocks), then the lock
        # is taken while Claude is "thinking", so the Commit is what waits on it.
        hold_placed = "SELECT count(*) FROM credit_holds WHERE user_id = $1"
        locker = await asyncpg.connect(stack.dsn)
        try:
            async with locker.transaction():
                load.probe("slow:1500")

                async def reserved() -> bool:
                    return bool(await conn.fetchval(hold_placed, user.id))

                await wait_for(reserved, 30, "the hold")
                await _lock_account(locker, user.id)
                await _terminate_the_waiter(locker, "the Commit to wait on the row lock")
        finally:
            await locker.close()
            await load.stop()
        [sample] = load.samples
        assert sample.response.status_code == 200, sample.response.text
        charged = Decimal(sample.response.headers["X-Credits-Charged"])
        await assert_charged_once(conn, sample.response.headers["X-Request-ID"], charged)
        books = await assert_books_balance(conn, user.id)
        assert books.available == 100 - charged
    assert_reconciled(stack)
