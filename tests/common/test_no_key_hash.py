"""No gRPC method returns a key hash: no response message (however deeply nested) has a field named like
one, and auth's answers, as bytes on the wire, never contain the hash stored for the user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import Message

from protos import auth_pb2, auth_pb2_grpc, billing_pb2, generation_pb2
from tests.stack import Stack

FILES: tuple[FileDescriptor, ...] = (auth_pb2.DESCRIPTOR, billing_pb2.DESCRIPTOR, generation_pb2.DESCRIPTOR)


def _fields(message: Descriptor, path: str, seen: set[str]) -> Iterator[str]:
    """Every field path reachable from `message` (each message type walked once, so recursion ends)."""
    if message.full_name in seen:
        return
    seen.add(message.full_name)
    for field in message.fields:
        yield f"{path}.{field.name}"
        if field.message_type is not None:
            yield from _fields(field.message_type, f"{path}.{field.name}", seen)


def _response_fields() -> list[str]:
    found: list[str] = []
    for file in FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                found += _fields(method.output_type, f"{service.name}.{method.name}", set())
    return found


def test_the_walk_sees_nested_fields() -> None:
    """Guards the walk itself: it must reach fields inside nested and repeated messages."""
    fields = _response_fields()
    assert "Auth.ListUsers.users.key_prefix" in fields
    assert "Auth.ValidateKey.user.email" in fields


def test_no_response_field_is_a_hash() -> None:
    offending = [name for name in _response_fields() if "hash" in name.rsplit(".", 1)[-1].lower()]
    assert offending == []


@pytest.fixture
async def auth(stack: Stack) -> AsyncIterator[auth_pb2_grpc.AuthStub]:
    async with stack.channel("auth") as channel:
        yield auth_pb2_grpc.AuthStub(channel)


async def _stored_hash(db: asyncpg.Connection, user_id: int) -> bytes:
    value = await db.fetchval("SELECT api_key_hash FROM user_accounts WHERE id = $1", user_id)
    assert isinstance(value, bytes) and len(value) == 32
    return value


def _assert_hash_absent(stored: bytes, *responses: Message) -> None:
    for response in responses:
        wire = response.SerializeToString()
        for form in (stored, stored.hex().encode(), stored.hex().upper().encode()):
            assert form not in wire, type(response).__name__
        assert stored.hex() not in str(response)


async def test_auth_answers_never_carry_the_stored_hash(auth: auth_pb2_grpc.AuthStub, db: asyncpg.Connection) -> None:
    name = f"h_{uuid.uuid4().hex[:12]}"
    created = await auth.CreateUser(auth_pb2.CreateUserRequest(username=name, email=f"{name}@example.test"))
    ref = auth_pb2.GetUserRequest(id=created.user.id)
    first = await _stored_hash(db, created.user.id)
    validated = await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=created.api_key))
    assert validated.valid
    by_id = await auth.GetUser(ref)
    by_name = await auth.GetUser(auth_pb2.GetUserRequest(username=name))
    listed = await auth.ListUsers(auth_pb2.ListUsersRequest(page_size=1, after_id=created.user.id - 1))
    assert [u.id for u in listed.users] == [created.user.id]
    _assert_hash_absent(first, created, validated, by_id, by_name, listed)

    rotated = await auth.RotateKey(ref)
    second = await _stored_hash(db, created.user.id)
    assert second != first
    disabled = await auth.DisableUser(ref)
    enabled = await auth.EnableUser(ref)
    revalidated = await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=rotated.api_key))
    _assert_hash_absent(second, rotated, disabled, enabled, revalidated, await auth.GetUser(ref))
    _assert_hash_absent(first, rotated, disabled, enabled, revalidated)
