"""The one Idempotency-Key rule (common/idempotency_key.py: 1-255 printable ASCII characters, no spaces) holds
at every boundary a caller's key crosses: the metered routes, grant-credits, and billing's Reserve and Grant."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest

from common.idempotency_key import MAX_LENGTH, InvalidIdempotencyKey, check_idempotency_key
from protos import billing_pb2, billing_pb2_grpc
from tests.helpers import UserFactory
from tests.stack import Stack

VALID = ["k", "a" * MAX_LENGTH, "!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "order-2026-11-29T12:00:00Z"]
INVALID = ["", "a" * (MAX_LENGTH + 1), "has space", "tab\there", "ünïcode", "nul\x00", "new\nline"]
STRUCTURE = {"storyInput": {"title": "Keys"}, "template": "three-act"}


@pytest.mark.parametrize("key", VALID)
def test_the_rule_accepts(key: str) -> None:
    assert check_idempotency_key(key) == key


@pytest.mark.parametrize("key", INVALID)
def test_the_rule_refuses(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        check_idempotency_key(key)


def _sendable(key: str) -> bool:
    """httpx refuses to send some of these at all (a control character in a header): those stop at the client."""
    return key.isascii() and key.isprintable() and key != ""


async def test_every_boundary_applies_the_same_rule(
    stack: Stack, client: httpx.Client, users: UserFactory, admin_headers: dict[str, str]
) -> None:
    user = users.create(credits=100)
    longest = uuid.uuid4().hex + "k" * (MAX_LENGTH - 32)
    for key in [longest, uuid.uuid4().hex]:
        metered = client.post("/api/generate-structure", json=STRUCTURE,
                              headers={**user.headers, "Idempotency-Key": key})
        assert metered.status_code == 200, metered.text
        grant = client.post("/api/admin/grant-credits", json={"username": user.username, "credits": 1},
                            headers={**admin_headers, "Idempotency-Key": key})
        assert grant.status_code == 200, grant.text
    for key in filter(_sendable, INVALID):
        for url, body, headers in (("/api/generate-structure", STRUCTURE, user.headers),
                                   ("/api/admin/grant-credits", {"username": user.username, "credits": 1},
                                    admin_headers)):
            refused = client.post(url, json=body, headers={**headers, "Idempotency-Key": key})
            assert refused.status_code == 422, (url, key, refused.text)

    async with stack.channel("billing") as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        for key in INVALID[1:5]:  # over gRPC an empty key is no key (proto3's default)
            for call in (
                billing.Reserve(billing_pb2.ReserveRequest(hold_id=str(uuid.uuid4()), user_id=user.id, amount="1",
                                                           idempotency_key=key, fingerprint=b"f" * 32)),
                billing.Grant(billing_pb2.GrantRequest(user_id=user.id, credits="1", idempotency_key=key,
                                                       idempotency_scope="cli")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, key
