"""Billing's ledger against the real database: grants, holds (post / void / expire), idempotency,
the CHECK that refuses overdrafts, and reconcile."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from services.billing.errors import (
    ExceedsPendingAmount,
    HoldNotFound,
    IdempotencyConflict,
    InvalidBillingRequest,
    InvalidCredits,
)
from services.billing.repository import BillingRepository, UsageRecord
from tests.stack import Stack

D = Decimal


@pytest.fixture
async def repo(stack: Stack) -> AsyncIterator[BillingRepository]:
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=5)
    try:
        yield BillingRepository(pool, default_ttl_seconds=600)
    finally:
        await pool.close()


_next_id = [10_000_000 + uuid.uuid4().int % 1_000_000_000]


def new_user_id() -> int:
    """Billing accounts are keyed by user id alone; unique ids keep tests independent."""
    _next_id[0] += 1
    return _next_id[0]


def hold() -> str:
    return str(uuid.uuid4())


async def test_grant_moves_balance_and_writes_ledger_row(repo: BillingRepository) -> None:
    uid = new_user_id()
    result = await repo.grant(uid, "100", idempotency_key=f"k-{uid}", notes="initial", created_by="t")
    assert result.balance.available == D("100") and result.balance.total_credits_purchased == D("100")
    again = await repo.grant(uid, D("50"), idempotency_key=f"k2-{uid}")
    assert again.balance.available == D("150") and again.balance.total_credits_purchased == D("150")
    rows = await repo.transactions(uid, 10, 0)
    assert [(r["transaction_type"], r["credits_amount"], r["balance_after"]) for r in rows] == [
        ("grant", D("50"), D("150")), ("grant", D("100"), D("100"))]


async def test_refund_does_not_count_as_purchase(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"a-{uid}")
    result = await repo.grant(uid, "5", transaction_type="refund", idempotency_key=f"b-{uid}")
    assert result.balance.available == D("15") and result.balance.total_credits_purchased == D("10")


async def test_grant_idempotency_replays_and_detects_conflicts(repo: BillingRepository) -> None:
    uid = new_user_id()
    first = await repo.grant(uid, "7.5", idempotency_key=f"idem-{uid}")
    second = await repo.grant(uid, "7.5", idempotency_key=f"idem-{uid}")
    assert second.replayed and second.transaction_id == first.transaction_id
    assert (await repo.balance(uid)).available == D("7.5")
    with pytest.raises(IdempotencyConflict):
        await repo.grant(uid, "8", idempotency_key=f"idem-{uid}")


@pytest.mark.parametrize("amount", ["0", "-1", "0.00001", "abc", "NaN", "Infinity", "100000000.0001"])
async def test_grant_refuses_bad_amounts(repo: BillingRepository, amount: str) -> None:
    uid = new_user_id()
    with pytest.raises(InvalidCredits):
        await repo.grant(uid, amount, idempotency_key=f"bad-{uid}")
    assert (await repo.balance(uid)).available == D("0")


async def test_grant_refuses_bad_type_and_missing_key(repo: BillingRepository) -> None:
    with pytest.raises(InvalidBillingRequest):
        await repo.grant(new_user_id(), "1", transaction_type="gift", idempotency_key="x")
    with pytest.raises(InvalidBillingRequest):
        await repo.grant(new_user_id(), "1", idempotency_key="")


async def test_negative_adjustment_cannot_overdraw(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "5", idempotency_key=f"g-{uid}")
    result = await repo.grant(uid, "-2", transaction_type="adjustment", idempotency_key=f"adj-{uid}")
    assert result.balance.available == D("3")
    with pytest.raises(InvalidCredits):
        await repo.grant(uid, "-4", transaction_type="adjustment", idempotency_key=f"adj2-{uid}")
    assert (await repo.balance(uid)).available == D("3")


async def test_reserve_commit_posts_actual_cost_and_releases_rest(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "20", idempotency_key=f"g-{uid}")
    hid = hold()
    reserved = await repo.reserve(hid, uid, "10", endpoint="/api/generate-structure", request_id="r1")
    assert reserved.ok and reserved.available == D("10")
    assert (await repo.balance(uid)).held == D("10")
    usage = UsageRecord(endpoint="/api/generate-structure", input_tokens=1000, output_tokens=500,
                        model="m", request_id="r1", project_path="p")
    settled = await repo.commit(hid, uid, "1.05", usage)
    assert settled.outcome == "posted" and settled.charged == D("1.05")
    assert settled.balance.available == D("18.95") and settled.balance.held == D("0")
    # A retry answers the first result and moves nothing.
    again = await repo.commit(hid, uid, "1.05", usage)
    assert again.outcome == "already_posted" and again.charged == D("1.05")
    assert (await repo.balance(uid)).available == D("18.95")
    stats = await repo.usage_stats(uid)
    assert stats.total_requests == 1 and stats.total_tokens == 1500 and stats.total_cost == D("1.05")
    assert stats.successful_requests == 1
    types = [r["transaction_type"] for r in await repo.transactions(uid, 10, 0)]
    assert types == ["usage", "release", "hold", "grant"]


async def test_reserve_refuses_when_insufficient_and_holds_nothing(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "5", idempotency_key=f"g-{uid}")
    result = await repo.reserve(hold(), uid, "10")
    assert not result.ok and result.available == D("5") and result.required == D("10")
    balance = await repo.balance(uid)
    assert balance.available == D("5") and balance.held == D("0")
    missing = await repo.reserve(hold(), new_user_id(), "1")
    assert not missing.ok and missing.available == D("0")


async def test_reserve_is_idempotent_by_hold_id(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"g-{uid}")
    hid = hold()
    assert (await repo.reserve(hid, uid, "4")).ok
    assert (await repo.reserve(hid, uid, "4")).ok
    assert (await repo.balance(uid)).held == D("4")
    with pytest.raises(IdempotencyConflict):
        await repo.reserve(hid, uid, "5")


async def test_release_voids_and_logs_failed_usage(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"g-{uid}")
    hid = hold()
    await repo.reserve(hid, uid, "6", endpoint="/api/generate-scene")
    result = await repo.release(hid, uid, UsageRecord(error_message="Claude API error (500)", input_tokens=0))
    assert result.outcome == "voided" and result.charged == D("0")
    assert result.balance.available == D("10") and result.balance.held == D("0")
    assert (await repo.release(hid, uid, UsageRecord())).outcome == "already_voided"
    assert (await repo.commit(hid, uid, "1", UsageRecord())).outcome == "already_voided"
    stats = await repo.usage_stats(uid)
    assert stats.total_requests == 1 and stats.successful_requests == 0 and stats.total_cost == D("0")


async def test_commit_refuses_more_than_the_hold(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"g-{uid}")
    hid = hold()
    await repo.reserve(hid, uid, "3")
    with pytest.raises(ExceedsPendingAmount):
        await repo.commit(hid, uid, "3.0001", UsageRecord())
    assert (await repo.balance(uid)).held == D("3")
    with pytest.raises(HoldNotFound):
        await repo.commit(hold(), uid, "1", UsageRecord())
    with pytest.raises(InvalidBillingRequest):
        await repo.commit("not-a-uuid", uid, "1", UsageRecord())


async def test_sweeper_expires_overdue_holds(repo: BillingRepository, db: asyncpg.Connection) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"g-{uid}")
    hid = hold()
    await repo.reserve(hid, uid, "4", ttl_seconds=1)
    for table, column in (("credit_holds", "id"), ("pending_holds", "hold_id")):
        await db.execute(f"UPDATE {table} SET expires_at = now() - interval '1 second' WHERE {column} = $1",
                         uuid.UUID(hid))
    assert await repo.sweep_expired() >= 1
    balance = await repo.balance(uid)
    assert balance.available == D("10") and balance.held == D("0")
    assert (await repo.commit(hid, uid, "1", UsageRecord())).outcome == "already_expired"
    row = await db.fetchrow("SELECT response_success, error_message FROM usage_logs WHERE hold_id = $1",
                            uuid.UUID(hid))
    assert row is not None and row["response_success"] is False and "expired" in row["error_message"]


async def test_database_refuses_negative_available_balance(repo: BillingRepository, db: asyncpg.Connection) -> None:
    uid = new_user_id()
    await repo.grant(uid, "1", idempotency_key=f"g-{uid}")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE credit_accounts SET available = available - 2 WHERE user_id = $1", uid)


async def test_unlimited_account_never_refuses_and_still_logs(repo: BillingRepository) -> None:
    uid = new_user_id()
    await repo.open_account(uid, unlimited=True)
    hid = hold()
    assert (await repo.reserve(hid, uid, "1000")).ok
    settled = await repo.commit(hid, uid, "2.5", UsageRecord(endpoint="/api/generate-dialogue", output_tokens=10))
    assert settled.balance.unlimited and settled.balance.available == D("-2.5")
    assert (await repo.usage_stats(uid)).total_cost == D("2.5")


async def test_reconcile_finds_every_tampered_balance(repo: BillingRepository, db: asyncpg.Connection) -> None:
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"g-{uid}")
    assert (await repo.reconcile()).of(uid) == []
    await db.execute("UPDATE credit_accounts SET available = available + 1 WHERE user_id = $1", uid)
    try:
        differences = {d.user_id: d for d in (await repo.reconcile()).accounts}
        assert uid in differences
        assert differences[uid].available == D("11") and differences[uid].ledger_available == D("10")
    finally:
        await db.execute("UPDATE credit_accounts SET available = available - 1 WHERE user_id = $1", uid)
    assert (await repo.reconcile()).of(uid) == []
