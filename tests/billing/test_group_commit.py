"""Group commit in billing: reserves and settlements that arrive together run as one statement
(billing_reserve_many / billing_settle_many), and every item's answer and every ledger row is exactly what
the single statements give, also when one item makes the batch statement fail and the items run one by one."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from services.billing.repository import BillingRepository, UsageRecord
from tests.billing.test_ledger import hold, new_user_id


async def test_concurrent_reserves_and_commits_share_statements(repo: BillingRepository) -> None:
    users = [new_user_id() for _ in range(6)]
    for uid in users:
        await repo.grant(uid, "10", idempotency_key=f"gc-{uid}")
    holds = [(uid, hold()) for uid in users for _ in range(3)]  # 3 holds of 3 credits each: 9 of 10
    reserved = await asyncio.gather(*(repo.reserve(h, uid, "3") for uid, h in holds))
    assert all(r.ok for r in reserved)
    assert repo._reserves.items - repo._reserves.batches > 0  # some statement carried several reserves
    refused = await asyncio.gather(*(repo.reserve(hold(), uid, "3") for uid in users))
    assert [r.reason for r in refused] == ["insufficient_credits"] * len(users)
    assert all(r.available == 1 for r in refused)

    settles_before = (repo._settles.items, repo._settles.batches)
    usage = UsageRecord(endpoint="/api/generate-scene", input_tokens=5, output_tokens=6)
    settled = await asyncio.gather(*(repo.commit(h, uid, "1.25", usage) for uid, h in holds))
    assert {s.outcome for s in settled} == {"posted"} and {s.charged for s in settled} == {Decimal("1.25")}
    assert repo._settles.items - settles_before[0] > repo._settles.batches - settles_before[1]
    for uid in users:
        balance = await repo.balance(uid)
        assert balance.available == Decimal("6.25") and balance.held == 0  # 10 - 3 × 1.25
    report = await repo.reconcile()
    assert report.of(*users) == [] and report.conservation.holds


async def test_a_failing_item_fails_alone(repo: BillingRepository) -> None:
    """A hold id used twice in one batch (a unique violation) and an unknown hold in a settle batch roll
    their batch statement back; the items then run one by one and only the bad one fails."""
    uid = new_user_id()
    await repo.grant(uid, "10", idempotency_key=f"gc-{uid}")
    twice, other = hold(), hold()
    first, replay, second = await asyncio.gather(
        repo.reserve(twice, uid, "2"), repo.reserve(twice, uid, "2"), repo.reserve(other, uid, "3"))
    assert first.ok and replay.ok and second.ok
    balance = await repo.balance(uid)
    assert balance.held == 5 and balance.available == 5  # the repeated hold id held once

    usage = UsageRecord(endpoint="/api/generate-scene")
    results = await asyncio.gather(repo.commit(twice, uid, "1", usage), repo.commit(hold(), uid, "1", usage),
                                   repo.commit(other, uid, "4", usage), repo.release(other, uid, usage),
                                   return_exceptions=True)
    posted, unknown, too_much, voided = results
    assert not isinstance(posted, BaseException) and posted.outcome == "posted"
    assert type(unknown).__name__ == "HoldNotFound"
    assert type(too_much).__name__ == "ExceedsPendingAmount"
    assert not isinstance(voided, BaseException) and voided.outcome == "voided"
    balance = await repo.balance(uid)
    assert balance.available == 9 and balance.held == 0
    report = await repo.reconcile()
    assert report.of(uid) == [] and report.conservation.holds
