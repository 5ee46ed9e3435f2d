"""Lock order: batches, single settlements and the sweeper, on two billing replicas, on the same holds of
the same accounts, never wait on each other in a cycle. PostgreSQL reports every deadlock it breaks in its
server log (even one a batch then recovers from by rerunning its items one by one), so the test reads the
log: not one `deadlock detected`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.service_auth import authenticated_channel
from protos import billing_pb2, billing_pb2_grpc
from services.billing.repository import BillingRepository
from tests.stack import Stack

Stub = billing_pb2_grpc.BillingStub
ROUNDS, USERS, HOLDS_PER_USER = 12, 4, 6
NO_LIMIT = billing_pb2.LimitValue(limit=0)


@pytest.fixture
async def replicas(stack: Stack) -> AsyncIterator[tuple[Stub, Stub]]:
    with stack.replica("billing-locks", "billing") as second:
        async with stack.channel("billing") as one, authenticated_channel(second, stack.tokens) as two:
            yield Stub(one), Stub(two)


def _server_log(stack: Stack) -> Path:
    return stack.data_dir / "postgres" / "server.log"


async def _answer(call: object) -> object:
    """A settlement's reply, or the error it failed with (a deadlock surfaces as UNAVAILABLE)."""
    try:
        return await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc


async def test_batches_single_settles_and_the_sweeper_never_deadlock(
    stack: Stack, replicas: tuple[Stub, Stub], repo: BillingRepository
) -> None:
    one, two = replicas
    log = _server_log(stack)
    start = log.stat().st_size
    users = [800_000_000 + uuid.uuid4().int % 100_000_000 for _ in range(USERS)]
    for uid in users:
        await one.Grant(billing_pb2.GrantRequest(user_id=uid, credits="100000", idempotency_key=f"locks-{uid}"))
        await one.SetLimits(billing_pb2.SetLimitsRequest(user_id=uid, requests_per_minute=NO_LIMIT,
                                                         max_concurrent=NO_LIMIT))
    usage = billing_pb2.Usage(endpoint="/api/generate-scene", input_tokens=1, output_tokens=1)
    failures: list[object] = []
    for _ in range(ROUNDS):
        holds = [(uid, str(uuid.uuid4())) for uid in users for _ in range(HOLDS_PER_USER)]
        # Every third hold lives one second, so the sweepers of both replicas expire it while it is settled.
        await asyncio.gather(*(
            one.Reserve(billing_pb2.ReserveRequest(hold_id=h, user_id=uid, amount="2",
                                                   ttl_seconds=1 if i % 3 == 0 else 600))
            for i, (uid, h) in enumerate(holds)))
        await asyncio.sleep(0.9)
        batch = billing_pb2.CommitBatchRequest(items=[
            billing_pb2.CommitRequest(hold_id=h, user_id=uid, amount="1", usage=usage) for uid, h in holds])
        singles = [
            two.Commit(billing_pb2.CommitRequest(hold_id=h, user_id=uid, amount="1", usage=usage)) if i % 2 else
            two.Release(billing_pb2.ReleaseRequest(hold_id=h, user_id=uid, usage=usage))
            for i, (uid, h) in enumerate(reversed(holds))
        ]
        answers = await asyncio.gather(_answer(one.CommitBatch(batch)), *(_answer(s) for s in singles))
        failures += [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
        batch_reply = answers[0]
        if isinstance(batch_reply, billing_pb2.SettleBatchResponse):
            failures += [item.status for item in batch_reply.items if item.status.code != 0]

    with log.open(errors="replace") as text:
        text.seek(start)
        deadlocks = [line for line in text if "deadlock detected" in line]
    assert deadlocks == []
    assert failures == []
    report = await repo.reconcile()
    assert report.of(*users) == [] and report.conservation.holds
    for uid in users:
        balance = await one.GetBalance(billing_pb2.UserRef(user_id=uid))
        assert balance.held == "0.0000", "every hold is posted, voided or expired"
