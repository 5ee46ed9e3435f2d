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
        # This test is about overdraw, not the rate limiter: 200 at once is far over the default limits.
        no_limit = billing_pb2.LimitValue(limit=0)
        await stub.SetLimits(billing_pb2.SetLimitsRequest(user_id=user_id, requests_per_minute=no_limit,
                                                          max_concurrent=no_limit))
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
        report = await BillingRepository(pool).reconcile()
    finally:
        await pool.close()
    assert report.of(user_id) == [] and report.conservation.holds
    holds = await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user_id)
    assert holds == N


async def test_reserves_racing_settlements_near_the_edge(stack: Stack, db: asyncpg.Connection) -> None:
    """Reserves that queue behind settlements on the account's row lock decide on the newest balance:
    every reply is a clean ok or insufficient-credits (no error), and the balance never goes negative."""
    user_id = 900_000_000 + uuid.uuid4().int % 100_000_000
    async with stack.channel("billing") as channel:
        stub = billing_pb2_grpc.BillingStub(channel)
        no_limit = billing_pb2.LimitValue(limit=0)
        await stub.SetLimits(billing_pb2.SetLimitsRequest(user_id=user_id, requests_per_minute=no_limit,
                                                          max_concurrent=no_limit))
        await stub.Grant(billing_pb2.GrantRequest(user_id=user_id, credits="100", idempotency_key=f"race-{user_id}"))

        async def worker() -> list[bool]:
            outcomes = []
            for _ in range(10):
                hold = str(uuid.uuid4())
                reply = await stub.Reserve(billing_pb2.ReserveRequest(hold_id=hold, user_id=user_id, amount="30"))
                outcomes.append(reply.ok)
                if reply.ok:
                    await stub.Commit(billing_pb2.CommitRequest(hold_id=hold, user_id=user_id, amount="1"))
                else:
                    assert reply.reason == billing_pb2.Reason.INSUFFICIENT_CREDITS
            return outcomes

        results = [ok for outcomes in await asyncio.gather(*[worker() for _ in range(20)]) for ok in outcomes]
        balance = await stub.GetBalance(billing_pb2.UserRef(user_id=user_id))
    charged = sum(results)
    assert charged >= 1 and Decimal(balance.available) == 100 - charged and Decimal(balance.held) == 0
    negative = await db.fetchval("SELECT count(*) FROM credit_transactions WHERE user_id = $1 AND balance_after < 0",
                                 user_id)
    assert negative == 0
