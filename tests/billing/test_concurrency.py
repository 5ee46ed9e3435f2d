"""No overspend under concurrency: 200 simultaneous reserves through the real billing gRPC server
against a balance that fits exactly N of them."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg

from protos import billing_pb2, billing_pb2_grpc
from services.billing.repository import BillingRepository
from tests.stack import Stack

N = 37
ATTEMPTS = 200
HOLD = Decimal("2.5000")


async def test_200_simultaneous_reserves_exactly_n_succeed(stack: Stack, db: asyncpg.Connection) -> None:
    user_id = 900_000_000 + uuid.uuid4().int % 100_000_000
    async with stack.channel("billing") as channel:
        stub = billing_pb2_grpc.BillingStub(channel)
        await stub.Grant(billing_pb2.GrantRequest(user_id=user_id, credits=str(HOLD * N),
                                                  idempotency_key=f"conc-{user_id}"))
        observed: list[Decimal] = []

        async def watch() -> None:
            while True:
                value = await db.fetchval("SELECT available FROM credit_accounts WHERE user_id = $1", user_id)
                observed.append(value)
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        replies = await asyncio.gather(*[
            stub.Reserve(billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=user_id, amount=str(HOLD)))
            for _ in range(ATTEMPTS)
        ])
        watcher.cancel()
        succeeded = [r for r in replies if r.ok]
        assert len(succeeded) == N
        assert all(Decimal(r.required) == HOLD for r in replies if not r.ok)
        balance = await stub.GetBalance(billing_pb2.UserRef(user_id=user_id))
        assert Decimal(balance.available) == 0 and Decimal(balance.held) == HOLD * N
        assert observed and min(observed) >= 0

    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=2)
    try:
        differences = await BillingRepository(pool).reconcile()
    finally:
        await pool.close()
    assert [d for d in differences if d.user_id == user_id] == []
    holds = await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user_id)
    assert holds == N
