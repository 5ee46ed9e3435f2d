"""How many reserves and settles one PostgreSQL takes: billing's own statements, driven straight at the database.

    .venv/bin/python -m bench.pg_capacity                 # ≈3 minutes; prints a table, writes bench/results/
    .venv/bin/python -m bench.pg_capacity --seconds 2 --rounds 1

Why straight at the database: docs/scaling.md asks how far one PostgreSQL goes before the ledger must be
sharded, so the services' Python and gRPC (measured by `make bench`) are left out. An embedded PostgreSQL 18 of
its own in a temporary directory, default settings (fsync and synchronous_commit on: every commit is durable),
the migrations applied, ACCOUNTS funded accounts. Each "call" is one metered call's money: a reserve (place a
pending hold) and then a settle (post 1.2345 credits of it, writing the usage row), both billing's statements
(services/billing/queries.py), on distinct random users:

  * single: each of c connections loops reserve → settle with RESERVE and SETTLE, one statement and one
    transaction each: what billing sends when calls arrive one at a time;
  * batched: each of w connections (w billing replicas, each with one reserve batch and one settle batch in
    flight, as common/coalesce.py allows) loops RESERVE_MANY with b items → SETTLE_MANY with the same b holds,
    one array per column as the repository builds them: the group commit under load, b × w calls in flight.

Reported per case: calls per second (= reserves per second = settles per second), median round trip of one
reserve and one settle (for batched: of the whole batch statement), and CPU milliseconds per call spent by
PostgreSQL (postmaster and every backend, from psutil) and by this client. The client shares the 2 cores with
the server, so calls per second are a floor; PostgreSQL's CPU per call is what extrapolates to a bigger box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import psutil

from common.db import migrate
from common.settings import REPO_ROOT
from devstack.embedded_pg import EmbeddedPostgres
from services.billing import queries
from tests.stack import free_port

ACCOUNTS = 10_000
RESULTS = REPO_ROOT / "bench" / "results" / "pg_capacity.json"
CHARGE = Decimal("1.2345")
HOLD = Decimal(5)


@dataclass(frozen=True)
class Case:
    name: str
    connections: int
    batch: int  # 1: the single statements

    @property
    def in_flight(self) -> int:
        return self.connections * self.batch


CASES = (
    Case("single", 1, 1), Case("single", 4, 1), Case("single", 16, 1), Case("single", 64, 1),
    Case("batched", 1, 16), Case("batched", 1, 64), Case("batched", 2, 16), Case("batched", 2, 64),
)


@dataclass
class Result:
    case: str
    connections: int
    batch: int
    in_flight: int
    calls_per_second: float
    reserve_ms_p50: float
    settle_ms_p50: float
    postgres_cpu_ms_per_call: float
    client_cpu_ms_per_call: float


def _reserve_args(hold: uuid.UUID, user: int) -> tuple[object, ...]:
    # (hold, user, amount, ttl, endpoint, request id, idempotency key, fingerprint) as the repository sends them
    return (hold, user, HOLD, 600.0, "/api/generate-scene", f"req-{hold.hex[:12]}", None, None)


def _settle_args(hold: uuid.UUID, user: int) -> tuple[object, ...]:
    return (hold, user, "posted", CHARGE, None, f"req-{hold.hex[:12]}", "/api/generate-scene", "POST", 900, 400,
            Decimal("1.05"), "claude-bench", "bench/project", None, 42)


#: The shared tail of a reserve: key retention hours, default requests per minute and max concurrent (0 = no
#: limit, so the bench measures the money, not the rate limiter refusing it).
SHARED = (24, 0, 0)


def _columns(items: list[tuple[object, ...]]) -> list[list[object]]:
    return [list(column) for column in zip(*items, strict=True)]


async def _worker(conn: asyncpg.Connection, batch: int, stop_at: float, reserve_ms: list[float],
                  settle_ms: list[float]) -> int:
    calls = 0
    while time.perf_counter() < stop_at:
        users = random.sample(range(1, ACCOUNTS + 1), batch)
        holds = [uuid.uuid4() for _ in users]
        started = time.perf_counter()
        if batch == 1:
            row = await conn.fetchrow(queries.RESERVE, *_reserve_args(holds[0], users[0]), *SHARED)
            placed = [row]
        else:
            placed = await conn.fetch(queries.RESERVE_MANY, *_columns(
                [_reserve_args(h, u) for h, u in zip(holds, users, strict=True)]), *SHARED)
        reserved = time.perf_counter()
        if len(placed) != batch or any(r["reason"] != "ok" for r in placed):
            raise RuntimeError(f"a reserve was refused: {placed[:3]}")
        if batch == 1:
            rows = [await conn.fetchrow(queries.SETTLE, *_settle_args(holds[0], users[0]))]
        else:
            rows = await conn.fetch(queries.SETTLE_MANY, *_columns(
                [_settle_args(h, u) for h, u in zip(holds, users, strict=True)]))
        settled = time.perf_counter()
        if len(rows) != batch or any(r["settled_outcome"] != "posted" for r in rows):
            raise RuntimeError(f"a settle did not post: {rows[:3]}")
        reserve_ms.append((reserved - started) * 1000)
        settle_ms.append((settled - reserved) * 1000)
        calls += batch
    return calls


def _postgres_cpu(postmaster: psutil.Process) -> float:
    """CPU seconds (user + system) of the postmaster and every live backend: connections stay open for a
    whole case, so none of the backends measured exits between the two readings."""
    total = 0.0
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def run_case(dsn: str, postmaster: psutil.Process, case: Case, seconds: float) -> Result:
    conns = [await asyncpg.connect(dsn) for _ in range(case.connections)]
    try:
        warm_reserve: list[float] = []
        await asyncio.gather(*(_worker(c, case.batch, time.perf_counter() + 0.5, warm_reserve, [])
                               for c in conns))
        reserve_ms: list[float] = []
        settle_ms: list[float] = []
        me = psutil.Process()
        pg_before, client_before = _postgres_cpu(postmaster), sum(me.cpu_times()[:2])
        started = time.perf_counter()
        counts = await asyncio.gather(*(_worker(c, case.batch, started + seconds, reserve_ms, settle_ms)
                                        for c in conns))
        elapsed = time.perf_counter() - started
        pg_cpu, client_cpu = _postgres_cpu(postmaster) - pg_before, sum(me.cpu_times()[:2]) - client_before
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    calls = sum(counts)
    return Result(case.name, case.connections, case.batch, case.in_flight, calls / elapsed,
                  statistics.median(reserve_ms), statistics.median(settle_ms), 1000 * pg_cpu / calls,
                  1000 * client_cpu / calls)


async def measure(dsn: str, postmaster: psutil.Process, seconds: float, rounds: int) -> list[list[Result]]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO credit_accounts (user_id, available) "
                           "SELECT g, 1000000000 FROM generate_series(1, $1) AS g", ACCOUNTS)
    finally:
        await conn.close()
    by_round: list[list[Result]] = []
    for _ in range(rounds):  # the cases interleaved round by round, so the machine's drift spreads over all
        by_round.append([await run_case(dsn, postmaster, case, seconds) for case in CASES])
    return by_round


async def _check_books(dsn: str) -> None:
    """Every hold the bench placed was posted, and each account's ledger adds up to its balance."""
    conn = await asyncpg.connect(dsn)
    try:
        pending = await conn.fetchval("SELECT count(*) FROM pending_holds")
        drift = await conn.fetchval(
            "SELECT count(*) FROM credit_accounts a WHERE a.held <> 0 OR a.available <> 1000000000 - $1::numeric * ("
            " SELECT count(*) FROM credit_holds h JOIN credit_hold_resolutions r ON r.hold_id = h.id"
            " WHERE h.user_id = a.user_id AND r.outcome = 'posted' AND r.amount = $1::numeric)", CHARGE)
    finally:
        await conn.close()
    if pending or drift:
        raise RuntimeError(f"books do not add up: {pending} holds pending, {drift} accounts off")


def _median_results(by_round: list[list[Result]]) -> list[Result]:
    merged = []
    for i, case in enumerate(CASES):
        runs = [r[i] for r in by_round]
        merged.append(Result(case.name, case.connections, case.batch, case.in_flight,
                             *(statistics.median(getattr(r, f) for r in runs) for f in (
                                 "calls_per_second", "reserve_ms_p50", "settle_ms_p50", "postgres_cpu_ms_per_call",
                                 "client_cpu_ms_per_call"))))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_capacity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsg-pg-capacity-") as tmp:
        server = EmbeddedPostgres(Path(tmp), free_port())
        dsn = server.start()
        try:
            postmaster = psutil.Process(int((server.pgdata / "postmaster.pid").read_text().split()[0]))
            asyncio.run(migrate(dsn, REPO_ROOT / "migrations"))
            by_round = asyncio.run(measure(dsn, postmaster, args.seconds, args.rounds))
            asyncio.run(_check_books(dsn))
            version = asyncio.run(_server_version(dsn))
        finally:
            server.stop()
    results = _median_results(by_round)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    machine = f"{platform.node()}: {psutil.cpu_count()} CPUs, {platform.processor() or platform.machine()}, " \
              f"load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())} at the end"
    print(f"{when}  {machine}  {version}")
    print(f"{args.rounds} rounds × {args.seconds:g} s per case; medians over rounds; a call = 1 reserve + 1 settle")
    print(f"{'case':<9}{'conns':>6}{'batch':>6}{'in flight':>10}{'calls/s':>10}{'reserve p50 ms':>15}"
          f"{'settle p50 ms':>14}{'PG CPU ms/call':>15}{'client CPU ms/call':>19}")
    for r in results:
        print(f"{r.case:<9}{r.connections:>6}{r.batch:>6}{r.in_flight:>10}{r.calls_per_second:>10.0f}"
              f"{r.reserve_ms_p50:>15.2f}{r.settle_ms_p50:>14.2f}{r.postgres_cpu_ms_per_call:>15.3f}"
              f"{r.client_cpu_ms_per_call:>19.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": when, "machine": machine, "server": version, "seconds": args.seconds,
                                   "rounds": args.rounds, "results": [asdict(r) for r in results],
                                   "by_round": [[asdict(r) for r in rnd] for rnd in by_round]}, indent=2))


async def _server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT 'PostgreSQL ' || current_setting('server_version')"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
