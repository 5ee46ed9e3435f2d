"""The batch RPCs the bulk import stands on, over gRPC against the real services and database: auth's
CreateUsers and FindUsers, billing's GrantBatch (and its dry run). Each batch item must be answered as its
single call would be, and a bad item must fail alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import grpc
import pytest

from common.errors import Refusal
from protos import auth_pb2, auth_pb2_grpc, billing_pb2, billing_pb2_grpc
from services.auth.keys import key_hash
from services.billing.repository import BillingRepository
from tests.stack import Stack

OK = 0


@pytest.fixture
async def auth(stack: Stack) -> AsyncIterator[auth_pb2_grpc.AuthStub]:
    async with stack.channel("auth") as channel:
        yield auth_pb2_grpc.AuthStub(channel)


@pytest.fixture
async def billing(stack: Stack) -> AsyncIterator[billing_pb2_grpc.BillingStub]:
    async with stack.channel("billing") as channel:
        yield billing_pb2_grpc.BillingStub(channel)


def _name() -> str:
    return f"b_{uuid.uuid4().hex[:12]}"


def _uid() -> int:
    return 700_000_000 + uuid.uuid4().int % 100_000_000


def _new(name: str, email: str | None = None) -> auth_pb2.CreateUserRequest:
    return auth_pb2.CreateUserRequest(username=name, email=email or f"{name}@example.test")


async def test_create_users_answers_each_item_as_create_user_would(auth: auth_pb2_grpc.AuthStub,
                                                                   db: asyncpg.Connection) -> None:
    taken = await auth.CreateUser(_new(_name()))
    fresh = [_name() for _ in range(3)]
    twin = _name()
    request = auth_pb2.CreateUsersRequest(items=[
        _new(fresh[0]),
        _new(taken.user.username.upper(), f"{_name()}@example.test"),  # username taken (case-insensitively)
        _new(fresh[1]),
        _new(_name(), taken.user.email.upper()),                        # email taken
        _new("x"),                                                      # invalid username
        _new(twin),
        _new(twin.upper(), f"{_name()}@example.test"),                  # taken by the item before it
        _new(f"  {fresh[2]} ", f" {fresh[2]}@example.test "),             # normalised as CreateUser does
    ])
    reply = await auth.CreateUsers(request)
    statuses = [(i.status.code, i.status.refusal, i.status.message) for i in reply.items]
    already = grpc.StatusCode.ALREADY_EXISTS.value[0]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [s[0] for s in statuses] == [OK, already, OK, already, invalid, OK, already, OK], statuses
    assert statuses[1][1:] == (Refusal.ALREADY_EXISTS, "Username already exists")
    assert statuses[3][1:] == (Refusal.ALREADY_EXISTS, "Email already exists")
    assert statuses[6][1:] == (Refusal.ALREADY_EXISTS, "Username already exists")
    assert statuses[4][1] == Refusal.INVALID_INPUT
    created = [reply.items[i].response for i in (0, 2, 5, 7)]
    assert [c.user.username for c in created] == [fresh[0], fresh[1], twin, fresh[2]]
    for c in created:
        assert c.api_key.startswith("user_") and not c.user.is_admin
        valid = await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=c.api_key))
        assert valid.valid and valid.user.id == c.user.id
        stored = await db.fetchval("SELECT api_key_hash FROM user_accounts WHERE id = $1", c.user.id)
        assert bytes(stored) == key_hash(c.api_key)
    names = [i.username.strip().lower() for i in request.items]
    rows = await db.fetch("SELECT lower(username) AS name FROM user_accounts WHERE lower(username) = ANY($1)", names)
    assert sorted(r["name"] for r in rows) == sorted({*(n.lower() for n in fresh), twin.lower(),
                                                       taken.user.username.lower()})


async def test_create_users_refuses_more_than_the_batch_limit(auth: auth_pb2_grpc.AuthStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await auth.CreateUsers(auth_pb2.CreateUsersRequest(items=[_new(_name()) for _ in range(5001)]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_find_users_by_username_email_or_id_case_insensitively(auth: auth_pb2_grpc.AuthStub) -> None:
    a, b, c = [await auth.CreateUser(_new(_name())) for _ in range(3)]
    found = await auth.FindUsers(auth_pb2.FindUsersRequest(
        usernames=[a.user.username.upper(), "no\x00such", "x", b.user.username],
        emails=[b.user.email.upper(), "not an email"], ids=[c.user.id]))
    assert [u.id for u in found.users] == sorted([a.user.id, b.user.id, c.user.id])
    assert (await auth.FindUsers(auth_pb2.FindUsersRequest(usernames=["nobody_" + uuid.uuid4().hex]))).users == []


def _grant(uid: int, credits: str, key: str, **fields: str) -> billing_pb2.GrantRequest:
    return billing_pb2.GrantRequest(user_id=uid, credits=credits, idempotency_key=key,
                                    idempotency_scope=f"create-user:{uid}", **fields)


async def _ledger(db: asyncpg.Connection, *uids: int) -> list[tuple[int, Decimal, Decimal, Decimal]]:
    rows = await db.fetch("""SELECT user_id, credits_amount, balance_before, balance_after FROM credit_transactions
                             WHERE user_id = ANY($1::bigint[]) ORDER BY id""", list(uids))
    return [tuple(r.values()) for r in rows]  # type: ignore[misc]


async def test_grant_batch_grants_once_replays_and_refuses_a_reused_key(
    billing: billing_pb2_grpc.BillingStub, db: asyncpg.Connection, repo: BillingRepository
) -> None:
    a, b = _uid(), _uid()
    batch = billing_pb2.GrantBatchRequest(items=[
        _grant(a, "100", "initial", notes="imported"),
        _grant(b, "2.5", "initial"),
        _grant(b, "1.0001", "bonus", transaction_type="purchase"),  # the same account twice in one batch
        _grant(a, "1", "initial", transaction_type="gift"),        # invalid: fails alone
    ])
    preview = await billing.GrantBatch(billing_pb2.GrantBatchRequest(items=batch.items, dry_run=True))
    assert [(i.status.code, i.response.replayed, i.response.transaction_id) for i in preview.items[:3]] == [
        (OK, False, 0)] * 3
    assert await _ledger(db, a, b) == []  # the dry run wrote nothing

    first = await billing.GrantBatch(batch)
    assert [i.status.code for i in first.items] == [OK, OK, OK, grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    assert [i.response.replayed for i in first.items[:3]] == [False, False, False]
    assert first.items[0].response.balance.available == "100.0000"
    assert first.items[1].response.balance.available == "3.5001"  # the account's after the whole batch
    assert first.items[1].response.balance.total_credits_purchased == "3.5001"
    ledger = await _ledger(db, a, b)
    assert sorted(ledger) == sorted([(a, Decimal(100), 0, 100), (b, Decimal("2.5"), 0, Decimal("2.5")),
                                     (b, Decimal("1.0001"), Decimal("2.5"), Decimal("3.5001"))])

    again = await billing.GrantBatch(batch)
    assert [(i.response.replayed, i.response.transaction_id) for i in again.items[:3]] == [
        (True, i.response.transaction_id) for i in first.items[:3]]
    replay_preview = await billing.GrantBatch(billing_pb2.GrantBatchRequest(items=batch.items, dry_run=True))
    assert [i.response.replayed for i in replay_preview.items[:3]] == [True] * 3
    assert await _ledger(db, a, b) == ledger  # granted once

    reused = billing_pb2.GrantBatchRequest(items=[_grant(a, "99", "initial", notes="imported")])
    for dry_run in (True, False):
        reused.dry_run = dry_run
        [item] = (await billing.GrantBatch(reused)).items
        assert (item.status.code, item.status.refusal) == (grpc.StatusCode.FAILED_PRECONDITION.value[0],
                                                           Refusal.IDEMPOTENCY_KEY_REUSED)
    assert await _ledger(db, a, b) == ledger
    assert (await repo.reconcile()).of(a, b) == []


async def test_a_grant_the_batch_statement_refuses_fails_alone(
    billing: billing_pb2_grpc.BillingStub, db: asyncpg.Connection, repo: BillingRepository
) -> None:
    """An adjustment below zero aborts the batch's statement; the items are then granted one by one."""
    a, b = _uid(), _uid()
    reply = await billing.GrantBatch(billing_pb2.GrantBatchRequest(items=[
        _grant(a, "10", "one"), _grant(b, "-5", "two", transaction_type="adjustment"), _grant(b, "3", "three"),
    ]))
    assert [i.status.code for i in reply.items] == [OK, grpc.StatusCode.INVALID_ARGUMENT.value[0], OK]
    assert sorted(await _ledger(db, a, b)) == sorted([(a, Decimal(10), 0, 10), (b, Decimal(3), 0, 3)])
    assert (await repo.reconcile()).of(a, b) == []


async def test_grant_batch_refuses_more_than_the_batch_limit(billing: billing_pb2_grpc.BillingStub) -> None:
    uid = _uid()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await billing.GrantBatch(billing_pb2.GrantBatchRequest(items=[_grant(uid, "1", f"k{i}") for i in range(5001)]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
