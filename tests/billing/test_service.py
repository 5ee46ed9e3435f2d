"""Every Billing RPC and its error codes, over gRPC against the real billing server and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest

from protos import billing_pb2, billing_pb2_grpc
from tests.stack import Stack


@pytest.fixture
async def billing(stack: Stack) -> AsyncIterator[billing_pb2_grpc.BillingStub]:
    async with stack.channel("billing") as channel:
        yield billing_pb2_grpc.BillingStub(channel)


def _uid() -> int:
    return 800_000_000 + uuid.uuid4().int % 100_000_000


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def _funded(billing: billing_pb2_grpc.BillingStub, credits: str = "10") -> int:
    uid = _uid()
    await billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits=credits, idempotency_key=f"fund-{uid}"))
    return uid


async def test_open_account_and_balance(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = _uid()
    opened = await billing.OpenAccount(billing_pb2.OpenAccountRequest(user_id=uid))
    assert opened.available == "0.0000" and not opened.unlimited
    again = await billing.OpenAccount(billing_pb2.OpenAccountRequest(user_id=uid, unlimited=True))
    assert again.unlimited
    balance = await billing.GetBalance(billing_pb2.UserRef(user_id=uid))
    assert balance.unlimited and balance.held == "0.0000"
    assert await _code(billing.GetBalance(billing_pb2.UserRef(user_id=0))) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(billing.OpenAccount(billing_pb2.OpenAccountRequest(user_id=-1))) == (
        grpc.StatusCode.INVALID_ARGUMENT)


async def test_grant_errors(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = _uid()
    for credits in ["", "0", "-1", "1.00001", "x"]:
        call = billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits=credits, idempotency_key=f"g-{credits}"))
        assert await _code(call) == grpc.StatusCode.INVALID_ARGUMENT
    no_key = billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits="1"))
    assert await _code(no_key) == grpc.StatusCode.INVALID_ARGUMENT
    bad_type = billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits="1", transaction_type="gift",
                                                      idempotency_key=f"t-{uid}"))
    assert await _code(bad_type) == grpc.StatusCode.INVALID_ARGUMENT
    await billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits="1", idempotency_key=f"k-{uid}"))
    conflict = billing.Grant(billing_pb2.GrantRequest(user_id=uid, credits="2", idempotency_key=f"k-{uid}"))
    assert await _code(conflict) == grpc.StatusCode.FAILED_PRECONDITION
    balance = await billing.GetBalance(billing_pb2.UserRef(user_id=uid))
    assert Decimal(balance.available) == 1


async def test_reserve_commit_release_over_grpc(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = await _funded(billing)
    hold = str(uuid.uuid4())
    reserved = await billing.Reserve(billing_pb2.ReserveRequest(hold_id=hold, user_id=uid, amount="4",
                                                               endpoint="/api/generate-scene", request_id="r"))
    assert reserved.ok and Decimal(reserved.available) == 6
    usage = billing_pb2.Usage(endpoint="/api/generate-scene", input_tokens=10, output_tokens=20, model="m",
                              request_id="r", latency_ms=5)
    settled = await billing.Commit(billing_pb2.CommitRequest(user_id=uid, hold_id=hold, amount="1.2345", usage=usage))
    assert settled.outcome == billing_pb2.POSTED and settled.charged == "1.2345"
    assert Decimal(settled.balance.available) == Decimal("8.7655")
    replay = await billing.Commit(billing_pb2.CommitRequest(user_id=uid, hold_id=hold, amount="1.2345", usage=usage))
    assert replay.outcome == billing_pb2.ALREADY_POSTED
    voided = await billing.Release(billing_pb2.ReleaseRequest(user_id=uid, hold_id=hold, usage=usage))
    assert voided.outcome == billing_pb2.ALREADY_POSTED and Decimal(voided.balance.available) == Decimal("8.7655")

    second = str(uuid.uuid4())
    assert (await billing.Reserve(billing_pb2.ReserveRequest(hold_id=second, user_id=uid, amount="2"))).ok
    released = await billing.Release(billing_pb2.ReleaseRequest(
        user_id=uid, hold_id=second, usage=billing_pb2.Usage(error_message="Claude API error (500)")))
    assert released.outcome == billing_pb2.VOIDED and released.charged == "0.0000"

    refused = await billing.Reserve(billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=uid, amount="9"))
    assert not refused.ok and Decimal(refused.required) == 9 and Decimal(refused.available) == Decimal("8.7655")


async def test_settlement_errors(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = await _funded(billing)
    hold = str(uuid.uuid4())
    await billing.Reserve(billing_pb2.ReserveRequest(hold_id=hold, user_id=uid, amount="1"))
    too_much = billing.Commit(billing_pb2.CommitRequest(user_id=uid, hold_id=hold, amount="1.0001"))
    assert await _code(too_much) == grpc.StatusCode.FAILED_PRECONDITION
    negative_tokens = billing.Commit(billing_pb2.CommitRequest(
        hold_id=hold, amount="1", usage=billing_pb2.Usage(input_tokens=-1)))
    assert await _code(negative_tokens) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = billing.Commit(billing_pb2.CommitRequest(user_id=uid, hold_id=str(uuid.uuid4()), amount="1"))
    assert await _code(unknown) == grpc.StatusCode.NOT_FOUND
    assert await _code(billing.Release(billing_pb2.ReleaseRequest(user_id=uid, hold_id="nope"))) == (
        grpc.StatusCode.INVALID_ARGUMENT)
    assert await _code(billing.Reserve(billing_pb2.ReserveRequest(hold_id="nope", user_id=uid, amount="1"))) == (
        grpc.StatusCode.INVALID_ARGUMENT)
    assert await _code(billing.Reserve(billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=uid,
                                                                  amount="0"))) == grpc.StatusCode.INVALID_ARGUMENT
    balance = await billing.GetBalance(billing_pb2.UserRef(user_id=uid))
    assert Decimal(balance.held) == 1 and Decimal(balance.available) == 9


async def test_usage_stats_transactions_and_totals(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = await _funded(billing, "20")
    for i, cost in enumerate(["1.5", "0.25"]):
        hold = str(uuid.uuid4())
        await billing.Reserve(billing_pb2.ReserveRequest(hold_id=hold, user_id=uid, amount="3"))
        usage = billing_pb2.Usage(endpoint=f"/api/e{i % 2}", input_tokens=100, output_tokens=50 + i)
        await billing.Commit(billing_pb2.CommitRequest(user_id=uid, hold_id=hold, amount=cost, usage=usage))
    stats = await billing.UsageStats(billing_pb2.UserRef(user_id=uid))
    assert stats.total_requests == 2 and stats.total_tokens == 301 and stats.successful_requests == 2
    assert Decimal(stats.total_cost) == Decimal("1.75") and stats.avg_tokens_per_request == 150
    assert sorted((u.endpoint, u.count) for u in stats.recent_usage) == [("/api/e0", 1), ("/api/e1", 1)]

    page = await billing.ListTransactions(billing_pb2.ListTransactionsRequest(user_id=uid, page_size=3))
    assert [t.transaction_type for t in page.transactions] == ["usage", "release", "hold"]
    rest = await billing.ListTransactions(billing_pb2.ListTransactionsRequest(
        user_id=uid, page_size=10, before_id=page.next_before_id))
    assert [t.transaction_type for t in rest.transactions] == ["usage", "release", "hold", "grant"]
    assert await _code(billing.ListTransactions(billing_pb2.ListTransactionsRequest(user_id=uid, page_size=-1))) == (
        grpc.StatusCode.INVALID_ARGUMENT)

    totals = await billing.UsageTotals(billing_pb2.UsageTotalsRequest(user_ids=[uid, _uid()]))
    assert len(totals.totals) == 1 and totals.totals[0].total_requests == 2
    assert await _code(billing.UsageTotals(billing_pb2.UsageTotalsRequest(user_ids=list(range(1, 502))))) == (
        grpc.StatusCode.INVALID_ARGUMENT)


async def test_batches_answer_each_item_as_its_single_call_would(billing: billing_pb2_grpc.BillingStub) -> None:
    """ReserveBatch/CommitBatch (what the edge sends under load): per-item results and per-item statuses,
    one bad item failing nothing else."""
    uid = await _funded(billing, "10")
    poor = await _funded(billing, "1")
    held, replayed = str(uuid.uuid4()), str(uuid.uuid4())
    usage = billing_pb2.Usage(endpoint="/api/generate-scene", input_tokens=3, output_tokens=4, request_id="b")
    reserves = await billing.ReserveBatch(billing_pb2.ReserveBatchRequest(items=[
        billing_pb2.ReserveRequest(hold_id=held, user_id=uid, amount="4"),
        billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=poor, amount="5"),
        billing_pb2.ReserveRequest(hold_id="not-a-uuid", user_id=uid, amount="1"),
        billing_pb2.ReserveRequest(hold_id=replayed, user_id=uid, amount="2"),
        billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=uid, amount="-1"),
    ]))
    ok, refused, bad_id, second, bad_amount = reserves.items
    assert ok.status.code == 0 and ok.response.ok
    assert refused.status.code == 0 and not refused.response.ok
    assert refused.response.reason == billing_pb2.Reason.INSUFFICIENT_CREDITS
    assert bad_id.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "UUID" in bad_id.status.message
    assert second.status.code == 0 and second.response.ok
    assert bad_amount.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # 4 + 2 held out of 10, whichever order the batch ran them in.
    balance = await billing.GetBalance(billing_pb2.UserRef(user_id=uid))
    assert Decimal(balance.available) == 4 and Decimal(balance.held) == 6

    commits = await billing.CommitBatch(billing_pb2.CommitBatchRequest(items=[
        billing_pb2.CommitRequest(user_id=uid, hold_id=held, amount="1.5", usage=usage),
        billing_pb2.CommitRequest(user_id=uid, hold_id=str(uuid.uuid4()), amount="1", usage=usage),
        billing_pb2.CommitRequest(user_id=uid, hold_id=replayed, amount="3", usage=usage),  # more than its hold of 2
        billing_pb2.CommitRequest(user_id=uid, hold_id=held, amount="1.5", usage=usage),  # the same commit again
    ]))
    posted, unknown, too_much, again = commits.items
    assert posted.status.code == 0 and posted.response.charged == "1.5000"
    assert unknown.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert too_much.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert again.status.code == 0 and again.response.charged == "1.5000"
    assert {posted.response.outcome, again.response.outcome} == {billing_pb2.POSTED, billing_pb2.ALREADY_POSTED}
    balance = await billing.GetBalance(billing_pb2.UserRef(user_id=uid))
    assert Decimal(balance.available) == Decimal("6.5") and Decimal(balance.held) == 2
