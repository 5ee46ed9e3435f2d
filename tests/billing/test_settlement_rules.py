"""Settlement as strict as TigerBeetle's two-phase transfers, enforced by the database itself.

Run against a database of their own (migrated from scratch, with no billing service and so no sweeper), so
a hold past its deadline stays pending until the test itself settles or sweeps it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from common.db import migrate
from common.settings import REPO_ROOT
from services.billing import queries
from services.billing.errors import AccountMismatch, InvalidCredits, InvalidSettlement
from services.billing.outcomes import Outcome
from services.billing.repository import BillingRepository, UsageRecord
from tests.stack import Stack

D = Decimal
USAGE = UsageRecord(endpoint="/api/generate-scene", input_tokens=10, output_tokens=20, model="m")


@pytest.fixture(scope="module")
async def own_db(stack: Stack) -> AsyncIterator[str]:
    name = f"rules_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(stack.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = stack.dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate(dsn, REPO_ROOT / "migrations")
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pool(own_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(own_db, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def repo(pool: asyncpg.Pool) -> BillingRepository:
    return BillingRepository(pool)


_ids = iter(range(1, 1_000_000))


async def account(repo: BillingRepository, credits: str = "100") -> int:
    uid = next(_ids)
    await repo.grant(uid, credits, idempotency_key=f"grant-{uid}")
    await repo.set_limits(uid, requests_per_minute=0, max_concurrent=0)
    return uid


async def held(repo: BillingRepository, uid: int, amount: str = "10", ttl: int = 600) -> str:
    hold = str(uuid.uuid4())
    assert (await repo.reserve(hold, uid, amount, ttl_seconds=ttl)).ok
    return hold


async def assert_clean(repo: BillingRepository, *uids: int) -> None:
    report = await repo.reconcile()
    assert report.of(*uids) == [] and report.conservation.holds, report


# -- the sweeper drains everything ---------------------------------------------------------------------

async def test_the_sweeper_drains_every_expired_hold_however_old(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    """After an outage or a backlog: 450 holds whose deadline passed three days ago all expire in one sweep
    (no look-back window, no 200-per-round cap)."""
    uids = [await account(repo, "1000") for _ in range(3)]
    holds = [await held(repo, uid, "1") for uid in uids for _ in range(150)]
    ids = [uuid.UUID(h) for h in holds]
    await pool.execute("UPDATE credit_holds SET expires_at = now() - interval '3 days' WHERE id = ANY($1)", ids)
    await pool.execute("UPDATE pending_holds SET expires_at = now() - interval '3 days' WHERE hold_id = ANY($1)", ids)
    assert await repo.sweep_expired() == 450
    outcomes = await pool.fetch("SELECT outcome, amount FROM credit_hold_resolutions WHERE hold_id = ANY($1)", ids)
    assert len(outcomes) == 450 and {(r["outcome"], r["amount"]) for r in outcomes} == {("expired", 0)}
    assert await pool.fetchval("SELECT count(*) FROM pending_holds WHERE hold_id = ANY($1)", ids) == 0
    assert await repo.sweep_expired() == 0
    await assert_clean(repo, *uids)


# -- an outcome's amount is tied to it, in the database ----------------------------------------------------

async def test_a_voided_or_expired_hold_charges_nothing(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    uid = await account(repo)
    hold = await held(repo, uid)
    for outcome in (Outcome.VOIDED, Outcome.EXPIRED):
        with pytest.raises(InvalidSettlement):
            await repo.settle(uuid.UUID(hold), uid, outcome, D(3), USAGE)
    assert (await repo.balance(uid)).held == 10
    # The table refuses it too, whoever writes it.
    hid = uuid.UUID(hold)
    insert = ("INSERT INTO credit_hold_resolutions (hold_id, user_id, pending_amount, outcome, amount) "
              "VALUES ($1, $2, $3, $4, $5)")
    for outcome, amount, error in (("voided", D(3), asyncpg.CheckViolationError),
                                   ("expired", D("0.0001"), asyncpg.CheckViolationError),
                                   ("posted", D("10.0001"), asyncpg.CheckViolationError)):
        with pytest.raises(error):
            await pool.execute(insert, hid, uid, D(10), outcome, amount)
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # another account, or another pending amount
        await pool.execute(insert, hid, uid + 1, D(10), "voided", D(0))
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(insert, hid, uid, D(20), "posted", D(15))
    await repo.release(hold, uid, USAGE)
    await assert_clean(repo, uid)


async def test_reconcile_checks_each_hold_against_its_rows(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    """Moving a usage ledger row from one posted hold to another keeps every account's sum right: only the
    per-hold check sees it."""
    uid = await account(repo)
    first, second = await held(repo, uid), await held(repo, uid)
    await repo.commit(first, uid, "1.5", USAGE)
    await repo.commit(second, uid, "2", USAGE)
    await assert_clean(repo, uid)
    moved = await pool.fetchval("SELECT id FROM credit_transactions WHERE hold_id = $1 AND transaction_type = 'usage'",
                                uuid.UUID(first))
    await pool.execute("UPDATE credit_transactions SET hold_id = $2 WHERE id = $1", moved, uuid.UUID(second))
    try:
        report = await repo.reconcile()
        assert report.accounts == [] or all(d.user_id != uid for d in report.accounts)
        problems = {str(d.hold_id): d.problem for d in report.holds if d.user_id == uid}
        assert problems == {first: "usage ledger rows differ from the charge",
                            second: "usage ledger rows differ from the charge"}
    finally:
        await pool.execute("UPDATE credit_transactions SET hold_id = $2 WHERE id = $1", moved, uuid.UUID(first))
    await assert_clean(repo, uid)


async def test_reconcile_checks_conservation_over_all_accounts(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    """A usage row charged to no account at all is in no account's numbers: conservation catches it."""
    assert (await repo.reconcile()).conservation.holds
    row = await pool.fetchval("INSERT INTO usage_logs (user_id, request_id, endpoint, credits_cost, response_success) "
                              "VALUES (999999999, 'r', '/api/x', 1, true) RETURNING id")
    try:
        report = await repo.reconcile()
        assert not report.conservation.holds and not report.clean
        assert report.conservation.logged == report.conservation.posted + 1
    finally:
        await pool.execute("DELETE FROM usage_logs WHERE id = $1", row)
    assert (await repo.reconcile()).conservation.holds


# -- amounts with more than 4 places are refused at the SQL boundary ------------------------------------------

async def test_sql_refuses_amounts_with_more_than_4_places(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    uid = await account(repo)
    hold = await held(repo, uid)
    too_fine = D("1.00005")
    with pytest.raises(asyncpg.PostgresError) as reserve:
        await pool.fetchrow(queries.RESERVE, uuid.uuid4(), uid, too_fine, 600.0, "", "", None, None, 24, 0, 0)
    with pytest.raises(asyncpg.PostgresError) as settle:
        await pool.fetchrow(queries.SETTLE, uuid.UUID(hold), uid, "posted", too_fine, None, "", "", "", 0, 0,
                            D(0), "", "", "", 0)
    with pytest.raises(asyncpg.PostgresError) as grant:
        await pool.fetch(queries.GRANT_MANY, [uid], [too_fine], ["grant"], [True], [f"fine-{uid}"], [""], [""])
    assert {e.value.sqlstate for e in (reserve, settle, grant)} == {"FB004"}
    balance = await repo.balance(uid)
    assert (balance.available, balance.held) == (90, 10)
    with pytest.raises(InvalidCredits):  # and the repository maps it, had Python let it through
        await repo.settle(uuid.UUID(hold), uid, Outcome.POSTED, too_fine, USAGE)
    await repo.release(hold, uid, USAGE)
    await assert_clean(repo, uid)


# -- a settlement names its account ------------------------------------------------------------------------------

async def test_commit_and_release_must_name_the_holds_account(repo: BillingRepository) -> None:
    uid, other = await account(repo), await account(repo)
    hold = await held(repo, uid)
    with pytest.raises(AccountMismatch):
        await repo.commit(hold, other, "1", USAGE)
    with pytest.raises(AccountMismatch):
        await repo.release(hold, other, USAGE)
    assert (await repo.balance(uid)).held == 10 and (await repo.balance(other)).available == 100
    assert (await repo.commit(hold, uid, "1", USAGE)).outcome is Outcome.POSTED
    await assert_clean(repo, uid, other)


# -- a second post with another amount is not a success ---------------------------------------------------------

async def test_a_second_commit_with_another_amount_exists_with_a_different_amount(repo: BillingRepository) -> None:
    uid = await account(repo)
    hold = await held(repo, uid)
    first = await repo.commit(hold, uid, "1.25", USAGE)
    assert first.outcome is Outcome.POSTED
    same = await repo.commit(hold, uid, "1.25", USAGE)
    other = await repo.commit(hold, uid, "2", USAGE)
    assert (same.outcome, same.charged) == (Outcome.ALREADY_POSTED, D("1.25"))
    assert (other.outcome, other.charged) == (Outcome.EXISTS_WITH_DIFFERENT_AMOUNT, D("1.25"))
    assert (await repo.release(hold, uid, USAGE)).outcome is Outcome.ALREADY_POSTED
    assert (await repo.balance(uid)).available == D("98.75")
    await assert_clean(repo, uid)


# -- a hold's deadline binds ----------------------------------------------------------------------------------------

async def test_a_post_before_the_deadline_posts(repo: BillingRepository) -> None:
    uid = await account(repo)
    hold = await held(repo, uid, ttl=3)
    settled = await repo.commit(hold, uid, "4", USAGE)
    assert (settled.outcome, settled.charged) == (Outcome.POSTED, D(4))
    await assert_clean(repo, uid)


async def test_a_post_or_void_after_the_deadline_expires_the_hold(repo: BillingRepository, pool: asyncpg.Pool) -> None:
    """No sweeper runs on this database: only the deadline itself stops these posts."""
    uid = await account(repo)
    late_post, late_void = await held(repo, uid, ttl=1), await held(repo, uid, ttl=1)
    await asyncio.sleep(1.2)
    posted = await repo.commit(late_post, uid, "4", USAGE)
    voided = await repo.release(late_void, uid, USAGE)
    assert (posted.outcome, posted.charged) == (Outcome.EXPIRED, 0)
    assert (voided.outcome, voided.charged) == (Outcome.EXPIRED, 0)
    assert (await repo.commit(late_post, uid, "4", USAGE)).outcome is Outcome.ALREADY_EXPIRED
    balance = await repo.balance(uid)
    assert (balance.available, balance.held) == (100, 0)
    row = await pool.fetchrow("SELECT response_success, credits_cost, error_message FROM usage_logs WHERE hold_id = $1",
                              uuid.UUID(late_post))
    assert (row["response_success"], row["credits_cost"]) == (False, 0) and "expired" in row["error_message"]
    await assert_clean(repo, uid)
