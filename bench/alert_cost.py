"""What the low-credit alert trigger costs the metered call's statements: time and WAL per reserve and per
settle, with the trigger on and off, measured in alternating rounds on one connection so the machine's drift
hits both alike.

    .venv/bin/python -m bench.alert_cost

Runs against an embedded PostgreSQL of its own in a temporary directory, with billing's own statements
(services/billing/queries.py RESERVE and SETTLE: the functions the group commit runs for each item). Three
cases:
  * reserve: the trigger's WHEN clause is false (available → held leaves the owned balance unchanged);
  * settle, no crossing: the owned balance drops but stays above the threshold (the common case: the
    trigger runs and writes nothing);
  * settle, crossing: the drop crosses the threshold (the trigger writes the event, its mail delivery and the
    disarmed flag); a grant re-arms the account before each one (not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import asyncpg

from common.db import migrate
from common.settings import REPO_ROOT
from devstack.embedded_pg import EmbeddedPostgres
from services.billing import queries
from tests.stack import free_port

ACCOUNTS = 50
TRIGGER = "credit_accounts_alerts"


async def _wal(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


async def _reserve(conn: asyncpg.Connection, user_id: int, amount: Decimal) -> uuid.UUID:
    hold = uuid.uuid4()
    row = await conn.fetchrow(queries.RESERVE, hold, user_id, amount, 600.0, "/bench", "", None, None, 24, 0, 0)
    assert row["reason"] == "ok", row
    return hold


async def _settle(conn: asyncpg.Connection, user_id: int, hold: uuid.UUID, charge: Decimal) -> None:
    row = await conn.fetchrow(queries.SETTLE, hold, user_id, "posted", charge, None, "", "/bench", "POST", 900, 400,
                              Decimal(0), "bench", "", "", 5)
    assert row["settled_outcome"] == "posted", row


Step = Callable[[int], Awaitable[float]]


#: The trigger's function (and what it calls), timed by PostgreSQL itself (track_functions): server time, free
#: of the client, the network and most of the machine's drift.
FUNCTIONS = ("credit_accounts_balance_moved",)


async def _function_totals(conn: asyncpg.Connection) -> tuple[int, float]:
    """The trigger's calls and total server time (ms) so far: the session's own counters, flushed first."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")  # a transaction ends: the counters reach the shared statistics
    row = await conn.fetchrow("SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(total_time), 0) AS total "
                              "FROM pg_stat_user_functions WHERE funcname = $1", FUNCTIONS[0])
    return int(row["calls"]), float(row["total"])


async def measure(dsn: str, rounds: int, per_round: int) -> dict[str, dict[str, dict[str, float]]]:
    conn = await asyncpg.connect(dsn, server_settings={"track_functions": "all", "stats_fetch_consistency": "none"})
    try:
        high = list(range(1, ACCOUNTS + 1))
        edge = list(range(ACCOUNTS + 1, 2 * ACCOUNTS + 1))
        await conn.executemany("INSERT INTO credit_accounts (user_id, available) VALUES ($1, 1000000)",
                               [(u,) for u in high])
        await conn.executemany("INSERT INTO credit_accounts (user_id, available) VALUES ($1, 100.5)",
                               [(u,) for u in edge])
        await conn.execute("UPDATE credit_alert_defaults SET threshold = 100")

        async def reserve(i: int) -> float:
            user = high[i % ACCOUNTS]
            started = time.perf_counter()
            hold = await _reserve(conn, user, Decimal("5"))
            spent = time.perf_counter() - started
            await _settle(conn, user, hold, Decimal(0))
            return spent

        async def settle(i: int) -> float:
            user = high[i % ACCOUNTS]
            hold = await _reserve(conn, user, Decimal("5"))
            started = time.perf_counter()
            await _settle(conn, user, hold, Decimal("1.2345"))
            return time.perf_counter() - started

        async def crossing(i: int) -> float:
            user = edge[i % ACCOUNTS]
            # Back to 100.5 (above the threshold: re-armed), then a charge of 1 crosses it.
            await conn.execute("UPDATE credit_accounts SET available = 100.5 - held WHERE user_id = $1", user)
            hold = await _reserve(conn, user, Decimal("5"))
            started = time.perf_counter()
            await _settle(conn, user, hold, Decimal(1))
            return time.perf_counter() - started

        cases: dict[str, Step] = {"reserve": reserve, "settle (no crossing)": settle, "settle (crossing)": crossing}
        samples: dict[str, dict[str, list[float]]] = {case: {"on": [], "off": []} for case in cases}
        wal: dict[str, dict[str, list[float]]] = {case: {"on": [], "off": []} for case in cases}
        trigger = {case: [0, 0.0] for case in cases}  # calls, ms
        for _ in range(5):  # warm the caches and plans
            for step in cases.values():
                await step(0)
        for round_index in range(rounds):
            for mode in (("on", "off") if round_index % 2 == 0 else ("off", "on")):
                await conn.execute(f"ALTER TABLE credit_accounts {'ENABLE' if mode == 'on' else 'DISABLE'} "
                                   f"TRIGGER {TRIGGER}")
                for case, step in cases.items():
                    calls, total = await _function_totals(conn)
                    before = await _wal(conn)
                    samples[case][mode] += [await step(i) for i in range(per_round)]
                    wal[case][mode].append((await _wal(conn) - before) / per_round)
                    calls_after, total_after = await _function_totals(conn)
                    if mode == "on":
                        trigger[case][0] += calls_after - calls
                        trigger[case][1] += total_after - total
        await conn.execute(f"ALTER TABLE credit_accounts ENABLE TRIGGER {TRIGGER}")
        alerts = await conn.fetchval("SELECT count(*) FROM credit_alerts")
        assert alerts >= rounds * per_round // 2, alerts  # the crossing case did cross with the trigger on
        return {
            case: {
                **{mode: {"median_us": statistics.median(values) * 1e6, "mean_us": statistics.fmean(values) * 1e6,
                          "wal_bytes_per_op": statistics.fmean(wal[case][mode])}
                   for mode, values in by_mode.items()},
                "trigger": {"calls_per_op": trigger[case][0] / (rounds * per_round),
                            "server_us_per_op": 1000 * trigger[case][1] / (rounds * per_round)},
            }
            for case, by_mode in samples.items()
        }
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsg-alert-cost-") as tmp:
        server = EmbeddedPostgres(Path(tmp), free_port())
        dsn = server.start()
        try:
            asyncio.run(migrate(dsn, REPO_ROOT / "migrations"))
            results = asyncio.run(measure(dsn, args.rounds, args.per_round))
        finally:
            server.stop()
    print(f"{args.rounds} rounds × {args.per_round} per case and mode, alternating; one connection, autocommit")
    print("µs: the timed statement's round trip; WAL: per step (the untimed reserve or void included)")
    print(f"{'case':<22}{'trigger':>8}{'median µs':>11}{'mean µs':>10}{'WAL B/op':>10}")
    for case, by_mode in results.items():
        for mode in ("off", "on"):
            r = by_mode[mode]
            print(f"{case:<22}{mode:>8}{r['median_us']:>11.1f}{r['mean_us']:>10.1f}{r['wal_bytes_per_op']:>10.0f}")
        delta = by_mode["on"]["median_us"] - by_mode["off"]["median_us"]
        print(f"{'':<22}{'Δ':>8}{delta:>+11.1f}{by_mode['on']['mean_us'] - by_mode['off']['mean_us']:>+10.1f}"
              f"{by_mode['on']['wal_bytes_per_op'] - by_mode['off']['wal_bytes_per_op']:>+10.0f}")
    print("server time in the trigger (PostgreSQL's own function timing, track_functions), per timed step:")
    for case, by_mode in results.items():
        t = by_mode["trigger"]
        print(f"  {case:<22} {t['calls_per_op']:.2f} trigger calls, {t['server_us_per_op']:6.1f} µs")


if __name__ == "__main__":
    main()
