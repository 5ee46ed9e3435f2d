"""Per-user rate limits in billing's Reserve, over gRPC against real billing processes and PostgreSQL.

The limits are decided under the account's row lock in the statement that places the hold, so they are
exact across replicas: the concurrency tests run against TWO billing processes sharing the database.
Requests-per-minute is a GCRA; its assertions allow for the tokens that time itself refills while a
burst is in flight (`rpm + elapsed / T`), so they hold on a slow machine without assuming speed.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import pytest

from common.db import migrate, migration_files
from common.service_auth import authenticated_channel
from common.settings import REPO_ROOT
from protos import billing_pb2, billing_pb2_grpc
from services.billing.repository import BillingRepository, UsageRecord
from tests.stack import Stack

Reason = billing_pb2.Reason
Stub = billing_pb2_grpc.BillingStub
NO_LIMIT = billing_pb2.LimitValue(limit=0)
DEFAULT = billing_pb2.LimitValue(use_default=True)


def limit(n: int) -> billing_pb2.LimitValue:
    return billing_pb2.LimitValue(limit=n)


def _uid() -> int:
    return 700_000_000 + uuid.uuid4().int % 100_000_000


@pytest.fixture
async def billing(stack: Stack) -> AsyncIterator[Stub]:
    async with stack.channel("billing") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
def second_billing(stack: Stack) -> Iterator[str]:
    """A second billing replica (its own process and port) on the same database."""
    with stack.replica("billing-replica", "billing") as address:
        yield address


@pytest.fixture
async def replicas(stack: Stack, second_billing: str) -> AsyncIterator[list[Stub]]:
    async with stack.channel("billing") as one, \
            authenticated_channel(second_billing, stack.tokens) as two:
        yield [Stub(one), Stub(two)]


async def _account(billing: Stub, credits: str = "1000", *, rpm: billing_pb2.LimitValue | None = None,
                   concurrent: billing_pb2.LimitValue | None = None) -> int:
    uid = _uid()
    await billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits=credits, idempotency_key=f"rl-{uid}"))
    await billing.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=rpm,
                                                         max_concurrent=concurrent))
    return uid


def _reserve(stub: Stub, uid: int, amount: str = "1", hold_id: str | None = None) -> object:
    return stub.Reserve(billing_pb2.ReserveRequest(hold_id=hold_id or str(uuid.uuid4()), user_id=uid,
                                                   amount=amount))


async def _assert_clean(repo: BillingRepository, db: asyncpg.Connection, uid: int) -> None:
    """Reconcile agrees (including holds_open = pending holds) and no refusal left a trace."""
    assert (await repo.reconcile()).of(uid) == []
    holds = await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", uid)
    hold_rows = await db.fetchval(
        "SELECT count(*) FROM credit_transactions WHERE user_id = $1 AND transaction_type = 'hold'", uid)
    assert hold_rows == holds


async def _pending(db: asyncpg.Connection, uid: int) -> tuple[int, int]:
    row = await db.fetchrow(
        """SELECT a.holds_open,
                  (SELECT count(*) FROM credit_holds h WHERE h.user_id = a.user_id AND NOT EXISTS
                      (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)) AS pending
           FROM credit_accounts a WHERE a.user_id = $1""", uid)
    return row["holds_open"], row["pending"]


# -- setting and reading limits ---------------------------------------------------------------------

async def test_set_and_get_limits(billing: Stub) -> None:
    uid = _uid()
    fresh = await billing.GetLimits(billing_pb2.UserRef(user_id=uid))
    assert not fresh.HasField("requests_per_minute") and not fresh.HasField("max_concurrent")
    assert (fresh.effective_requests_per_minute, fresh.effective_max_concurrent) == (60, 5)  # the stack's defaults

    # Setting limits before the first grant opens the account.
    set_rpm = await billing.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=limit(7)))
    assert set_rpm.requests_per_minute == 7 and not set_rpm.HasField("max_concurrent")
    assert (set_rpm.effective_requests_per_minute, set_rpm.effective_max_concurrent) == (7, 5)

    kept = await billing.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, max_concurrent=NO_LIMIT))
    assert kept.requests_per_minute == 7, "an absent field is kept"
    assert kept.HasField("max_concurrent") and kept.max_concurrent == 0 and kept.effective_max_concurrent == 0

    back = await billing.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=DEFAULT))
    assert not back.HasField("requests_per_minute") and back.effective_requests_per_minute == 60
    assert back.max_concurrent == 0
    assert await billing.GetLimits(billing_pb2.UserRef(user_id=uid)) == back

    for bad in [billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=limit(-1)),
                billing_pb2.SetLimitsRequest(user_id=uid, max_concurrent=limit(10_001)),
                billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=limit(6001)),
                billing_pb2.SetLimitsRequest(user_id=uid, max_concurrent=billing_pb2.LimitValue()),
                billing_pb2.SetLimitsRequest(user_id=uid, max_concurrent=billing_pb2.LimitValue(use_default=False)),
                billing_pb2.SetLimitsRequest(user_id=0, max_concurrent=NO_LIMIT)]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await billing.SetLimits(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await billing.GetLimits(billing_pb2.UserRef(user_id=uid)) == back, "a refused change changes nothing"


# -- requests per minute ----------------------------------------------------------------------------

async def test_requests_per_minute_burst_then_retry_after(billing: Stub, repo: BillingRepository,
                                                          db: asyncpg.Connection) -> None:
    rpm = 20  # one token every 3 s
    emission = 60 / rpm
    uid = await _account(billing, rpm=limit(rpm), concurrent=NO_LIMIT)
    started = time.monotonic()
    replies = await asyncio.gather(*[_reserve(billing, uid) for _ in range(rpm + 10)])
    elapsed = time.monotonic() - started
    ok = [r for r in replies if r.ok]
    limited = [r for r in replies if not r.ok]
    # Exactly the burst, plus whatever time refilled while the burst was in flight.
    assert rpm <= len(ok) <= rpm + math.floor(elapsed / emission)
    assert limited and all(r.reason == Reason.REQUESTS_PER_MINUTE for r in limited)
    assert all(1 <= r.retry_after_seconds <= math.ceil(emission) for r in limited)
    assert all(Decimal(r.available) == 1000 - len(ok) for r in limited), "a refusal holds nothing"

    tat_before = await db.fetchval("SELECT rate_tat FROM credit_accounts WHERE user_id = $1", uid)
    refused = await _reserve(billing, uid)
    assert not refused.ok and refused.reason == Reason.REQUESTS_PER_MINUTE
    assert await db.fetchval("SELECT rate_tat FROM credit_accounts WHERE user_id = $1", uid) == tat_before, (
        "a refused call takes no token")

    await asyncio.sleep(refused.retry_after_seconds)
    again = await _reserve(billing, uid)
    assert again.ok, "after Retry-After the next call is allowed"
    assert (await _reserve(billing, uid)).reason == Reason.REQUESTS_PER_MINUTE, "and it used the only token"
    await _assert_clean(repo, db, uid)
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", uid) == len(ok) + 1


async def test_requests_per_minute_exact_across_two_replicas(replicas: list[Stub], repo: BillingRepository,
                                                             db: asyncpg.Connection) -> None:
    rpm = 12  # one token every 5 s
    uid = await _account(replicas[0], rpm=limit(rpm), concurrent=NO_LIMIT)
    started = time.monotonic()
    replies = await asyncio.gather(*[_reserve(replicas[i % 2], uid) for i in range(60)])
    elapsed = time.monotonic() - started
    ok = sum(r.ok for r in replies)
    assert rpm <= ok <= rpm + math.floor(elapsed / (60 / rpm))
    assert all(r.reason == Reason.REQUESTS_PER_MINUTE for r in replies if not r.ok)
    await _assert_clean(repo, db, uid)


# -- concurrency ------------------------------------------------------------------------------------

async def test_max_concurrent_never_exceeded_across_two_replicas(replicas: list[Stub], repo: BillingRepository,
                                                                 db: asyncpg.Connection) -> None:
    cap = 3
    uid = await _account(replicas[0], rpm=NO_LIMIT, concurrent=limit(cap))
    seen: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        # Stopped by a flag, not cancelled: a cancelled query would leave `db` busy for the checks below.
        while not stop.is_set():
            seen.append(await _pending(db, uid))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        holds = [str(uuid.uuid4()) for _ in range(80)]
        replies = await asyncio.gather(*[_reserve(replicas[i % 2], uid, hold_id=h) for i, h in enumerate(holds)])
        held = [h for h, r in zip(holds, replies, strict=True) if r.ok]
        assert len(held) == cap, "nothing is released during the burst, so exactly `cap` fit"
        refused = [r for r in replies if not r.ok]
        assert all(r.reason == Reason.MAX_CONCURRENT and r.retry_after_seconds == 1 for r in refused)

        # Churn: settle the holds while 80 more reserves race them on both replicas; each success is
        # released at once, so slots keep opening and closing.
        async def reserve_then_release(i: int) -> bool:
            hold = str(uuid.uuid4())
            reply = await _reserve(replicas[i % 2], uid, hold_id=hold)
            if reply.ok:
                await replicas[(i + 1) % 2].Release(billing_pb2.ReleaseRequest(hold_id=hold, user_id=uid))
            return bool(reply.ok)

        releases = [replicas[i % 2].Release(billing_pb2.ReleaseRequest(hold_id=h, user_id=uid))
                    for i, h in enumerate(held)]
        results = await asyncio.gather(*releases, *[reserve_then_release(i) for i in range(80)])
        assert any(r is True for r in results[cap:]), "released slots are reused"
    finally:
        stop.set()
        await watcher
    assert seen and max(open_ for open_, _ in seen) <= cap and max(p for _, p in seen) <= cap
    assert await _pending(db, uid) == (0, 0)
    await _assert_clean(repo, db, uid)


async def test_replayed_hold_is_not_refused_by_its_own_slot(billing: Stub, db: asyncpg.Connection) -> None:
    uid = await _account(billing, rpm=limit(1), concurrent=limit(1))
    hold = str(uuid.uuid4())
    assert (await _reserve(billing, uid, hold_id=hold)).ok
    replay = await _reserve(billing, uid, hold_id=hold)
    assert replay.ok, "a retry of a placed hold replays, though the hold fills both limits"
    other = await _reserve(billing, uid)
    assert not other.ok and other.reason == Reason.MAX_CONCURRENT
    assert await _pending(db, uid) == (1, 1)


# -- precedence, exemption, limits off --------------------------------------------------------------

async def test_insufficient_credits_is_not_a_rate_limit(billing: Stub, db: asyncpg.Connection) -> None:
    uid = await _account(billing, "1", rpm=limit(1), concurrent=limit(1))
    poor = await _reserve(billing, uid, "5")
    assert not poor.ok and poor.reason == Reason.INSUFFICIENT_CREDITS and poor.retry_after_seconds == 0
    assert await db.fetchval("SELECT rate_tat FROM credit_accounts WHERE user_id = $1", uid) is None
    assert (await _reserve(billing, uid, "1")).ok, "the refused call took no token"
    # Now over both limits and unable to pay: told to buy credits (waiting would not help), not to wait.
    both = await _reserve(billing, uid, "5")
    assert not both.ok and both.reason == Reason.INSUFFICIENT_CREDITS
    missing = await _reserve(billing, _uid())
    assert not missing.ok and missing.reason == Reason.INSUFFICIENT_CREDITS


async def test_unlimited_accounts_are_exempt(billing: Stub, repo: BillingRepository,
                                             db: asyncpg.Connection) -> None:
    uid = _uid()
    await billing.OpenAccount(billing_pb2.OpenAccountRequest(user_id=uid, unlimited=True))
    limits = await billing.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=limit(1),
                                                                  max_concurrent=limit(1)))
    assert limits.exempt
    replies = await asyncio.gather(*[_reserve(billing, uid) for _ in range(10)])
    assert all(r.ok for r in replies)
    assert await _pending(db, uid) == (10, 10), "exempt accounts still count their holds"
    await _assert_clean(repo, db, uid)


async def test_limits_off_still_never_overdraw(replicas: list[Stub], repo: BillingRepository,
                                               db: asyncpg.Connection) -> None:
    fits, hold = 23, Decimal("3.5000")
    uid = await _account(replicas[0], str(hold * fits + Decimal("1.2")), rpm=NO_LIMIT, concurrent=NO_LIMIT)
    replies = await asyncio.gather(*[_reserve(replicas[i % 2], uid, str(hold)) for i in range(120)])
    assert sum(r.ok for r in replies) == fits  # floor(balance / hold)
    assert all(r.reason == Reason.INSUFFICIENT_CREDITS for r in replies if not r.ok)
    balance = await replicas[1].GetBalance(billing_pb2.UserRef(user_id=uid))
    assert Decimal(balance.available) == Decimal("1.2") and Decimal(balance.held) == hold * fits
    negative = await db.fetchval(
        "SELECT count(*) FROM credit_transactions WHERE user_id = $1 AND balance_after < 0", uid)
    assert negative == 0
    await _assert_clean(repo, db, uid)


# -- reconcile and the migration ----------------------------------------------------------------------

async def test_reconcile_reports_a_drifted_holds_open(billing: Stub, repo: BillingRepository,
                                                      db: asyncpg.Connection) -> None:
    uid = await _account(billing, concurrent=NO_LIMIT)
    assert (await _reserve(billing, uid)).ok
    await db.execute("UPDATE credit_accounts SET holds_open = holds_open + 1 WHERE user_id = $1", uid)
    try:
        [difference] = (await repo.reconcile()).of(uid)
        assert (difference.holds_open, difference.pending_holds) == (2, 1)
    finally:
        await db.execute("UPDATE credit_accounts SET holds_open = holds_open - 1 WHERE user_id = $1", uid)
    await _assert_clean(repo, db, uid)


@pytest.fixture
async def fresh_dsn(stack: Stack, db: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"rl_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield stack.dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_migration_backfills_holds_open(fresh_dsn: str, tmp_path: Path) -> None:
    """Holds pending before 0006 count toward the new limit; settling one afterwards closes its slot."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    every = migration_files(REPO_ROOT / "migrations")
    for path in every:
        if path.name < "0006":
            (migrations / path.name).write_text(path.read_text())
    await migrate(fresh_dsn, migrations)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
    try:
        repo = BillingRepository(pool)
        await pool.execute("INSERT INTO credit_accounts (user_id, available) VALUES (1, 10), (2, 10)")
        holds = [uuid.uuid4() for _ in range(3)]
        for hold, user in zip(holds, (1, 1, 2), strict=True):
            await pool.execute("INSERT INTO credit_holds (id, user_id, amount, expires_at) "
                               "VALUES ($1, $2, 1, now() + interval '1 hour')", hold, user)
        await pool.execute("INSERT INTO credit_hold_resolutions (hold_id, outcome, amount) "
                           "VALUES ($1, 'voided', 0)", holds[2])
        for path in every:
            (migrations / path.name).write_text(path.read_text())
        shutil.copytree(REPO_ROOT / "migrations" / "functions", migrations / "functions")
        await migrate(fresh_dsn, migrations)
        counts = dict(await pool.fetch("SELECT user_id, holds_open FROM credit_accounts ORDER BY user_id"))
        assert counts == {1: 2, 2: 0}
        # 0009: the pending holds are listed for the sweeper, and the old resolution names its account.
        assert {r["hold_id"] for r in await pool.fetch("SELECT hold_id FROM pending_holds")} == set(holds[:2])
        assert await pool.fetchval("SELECT user_id FROM credit_hold_resolutions WHERE hold_id = $1", holds[2]) == 2
        await pool.execute("UPDATE credit_accounts SET held = 2, available = 8 WHERE user_id = 1")
        await repo.release(str(holds[0]), 1, UsageRecord())
        assert await pool.fetchval("SELECT holds_open FROM credit_accounts WHERE user_id = 1") == 1
    finally:
        await pool.close()


async def test_operator_cli_shows_and_sets_limits(stack: Stack, billing: Stub) -> None:
    uid = await _account(billing, concurrent=limit(4))
    env = {**stack.env, "DATABASE_URL": stack.dsn}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.billing.cli", "limits", str(uid), *args], env=env,
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    shown = cli()
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "requests per minute 60 (default); max concurrent 4 (set); in flight 0"
    changed = cli("--rpm", "0", "--concurrent", "default")
    assert changed.returncode == 0, changed.stderr
    assert "requests per minute no limit (set); max concurrent 5 (default)" in changed.stdout
    stored = await billing.GetLimits(billing_pb2.UserRef(user_id=uid))
    assert stored.requests_per_minute == 0 and not stored.HasField("max_concurrent")
    assert cli("--rpm", "lots").returncode != 0
    assert await billing.GetLimits(billing_pb2.UserRef(user_id=uid)) == stored
