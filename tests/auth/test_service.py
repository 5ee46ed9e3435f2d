"""Every Auth RPC and its errors, over gRPC against the real auth server and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos import auth_pb2, auth_pb2_grpc
from services.auth.keys import key_hash
from tests.stack import Stack


@pytest.fixture
async def auth(stack: Stack) -> AsyncIterator[auth_pb2_grpc.AuthStub]:
    async with stack.channel("auth") as channel:
        yield auth_pb2_grpc.AuthStub(channel)


def _name() -> str:
    return f"a_{uuid.uuid4().hex[:12]}"


async def _create(auth: auth_pb2_grpc.AuthStub) -> auth_pb2.CreateUserResponse:
    name = _name()
    return await auth.CreateUser(auth_pb2.CreateUserRequest(username=name, email=f"{name}@example.test"))


async def test_create_and_validate(auth: auth_pb2_grpc.AuthStub, db: asyncpg.Connection) -> None:
    created = await _create(auth)
    assert created.api_key.startswith("user_") and not created.user.is_admin
    valid = await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=created.api_key))
    assert valid.valid and valid.user.id == created.user.id
    row = await db.fetchrow("SELECT api_key_hash, api_key_prefix FROM user_accounts WHERE id = $1", created.user.id)
    assert bytes(row["api_key_hash"]) == key_hash(created.api_key)
    assert created.api_key not in str(dict(row))
    for bad in ["", "nope", "user_" + "0" * 64, created.api_key.upper()]:
        assert not (await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=bad))).valid


async def test_create_rejects_duplicates_and_bad_input(auth: auth_pb2_grpc.AuthStub) -> None:
    created = await _create(auth)
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await auth.CreateUser(auth_pb2.CreateUserRequest(username=created.user.username, email="x@example.test"))
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as dup_email:
        await auth.CreateUser(auth_pb2.CreateUserRequest(username=_name(), email=created.user.email))
    assert dup_email.value.code() == grpc.StatusCode.ALREADY_EXISTS and "Email" in dup_email.value.details()
    for username, email in [("x", "a@example.test"), ("bad name", "a@example.test"), (_name(), "nope")]:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await auth.CreateUser(auth_pb2.CreateUserRequest(username=username, email=email))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_user_by_id_and_username(auth: auth_pb2_grpc.AuthStub) -> None:
    created = await _create(auth)
    by_id = await auth.GetUser(auth_pb2.GetUserRequest(id=created.user.id))
    by_name = await auth.GetUser(auth_pb2.GetUserRequest(username=created.user.username.upper()))
    assert by_id == by_name and by_id.username == created.user.username
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await auth.GetUser(auth_pb2.GetUserRequest(username=_name()))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await auth.GetUser(auth_pb2.GetUserRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_users_pages_by_id(auth: auth_pb2_grpc.AuthStub) -> None:
    for _ in range(3):
        await _create(auth)
    seen: list[int] = []
    after = 0
    while True:
        page = await auth.ListUsers(auth_pb2.ListUsersRequest(page_size=2, after_id=after))
        seen += [u.id for u in page.users]
        if not page.next_after_id:
            break
        after = page.next_after_id
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 4
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await auth.ListUsers(auth_pb2.ListUsersRequest(page_size=-1))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_rotate_key_kills_the_old_key_at_once(auth: auth_pb2_grpc.AuthStub) -> None:
    created = await _create(auth)
    rotated = await auth.RotateKey(auth_pb2.GetUserRequest(id=created.user.id))
    assert rotated.api_key != created.api_key and rotated.user.key_prefix != created.user.key_prefix
    assert not (await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=created.api_key))).valid
    assert (await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=rotated.api_key))).valid
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await auth.RotateKey(auth_pb2.GetUserRequest(id=2**62))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_disable_and_enable(auth: auth_pb2_grpc.AuthStub) -> None:
    created = await _create(auth)
    disabled = await auth.DisableUser(auth_pb2.GetUserRequest(username=created.user.username))
    assert disabled.disabled
    assert not (await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=created.api_key))).valid
    enabled = await auth.EnableUser(auth_pb2.GetUserRequest(id=created.user.id))
    assert not enabled.disabled
    assert (await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=created.api_key))).valid
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await auth.DisableUser(auth_pb2.GetUserRequest(username=_name()))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("service", ["auth", "billing", "generation"])
async def test_every_service_has_health_and_reflection(stack: Stack, service: str) -> None:
    async with stack.channel(service) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert f"fsg.{service}.v1.{service.capitalize()}" in names and "grpc.health.v1.Health" in names
