"""Idempotency-Key on the metered generation calls and on grants, through the real processes.

The guarantee: a retry with the same key answers the first response and is charged (or granted) once;
the same key with a different body is a 422; while the first attempt runs, a retry is a 409.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from edge.pipeline import fingerprint
from protos import billing_pb2, billing_pb2_grpc, generation_pb2, generation_pb2_grpc
from tests.generation.test_endpoints import STORY, parse, snapshot
from tests.helpers import PAID_PROJECTS, TestUser, UserFactory, structure_request
from tests.stack import Stack

STRUCTURE = {"storyInput": STORY, "template": "three-act"}


def idem(user: TestUser, key: str, **extra: str) -> dict[str, str]:
    return {**user.headers, "Idempotency-Key": key, **extra}


async def charges(db: asyncpg.Connection, user_id: int) -> tuple[int, Decimal, int]:
    """(successful usage rows, total charged, projects) for the user."""
    row = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE response_success) AS ok, COALESCE(sum(credits_cost), 0) AS cost
           FROM usage_logs WHERE user_id = $1""", user_id)
    projects = await db.fetchval(PAID_PROJECTS, user_id)
    return row["ok"], row["cost"], projects


async def test_retry_with_the_same_key_replays_the_first_response_and_charges_once(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    key = uuid.uuid4().hex
    first = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert first.status_code == 200, first.text
    charged = Decimal(first.headers["X-Credits-Charged"])
    assert charged > 0

    again = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert parse(again) == parse(first)
    for header in ("X-Credits-Charged", "X-Credits-Remaining", "X-Request-ID"):
        assert again.headers[header] == first.headers[header]
    assert "Idempotent-Replayed" not in first.headers
    assert await charges(db, user.id) == (1, charged, 1)
    assert users.balance(user) == 100 - charged

    # The same body without the key is a new request, charged again.
    fresh = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
    assert fresh.status_code == 200
    assert (await charges(db, user.id))[0] == 2


async def test_same_key_with_a_different_request_is_422_and_changes_nothing(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    key = uuid.uuid4().hex
    first = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert first.status_code == 200, first.text
    path = first.json()["projectPath"]
    before = await snapshot(db, user.id)

    other_body = {"storyInput": {**STORY, "title": "Another Heist"}, "template": "three-act"}
    other_endpoint = ("/api/generate-plot-points-for-act/" + path + "/setup", {})
    for url, body in (("/api/generate-structure", other_body), other_endpoint,
                      ("/api/generate-structure", {**STRUCTURE, "model": "claude-3-5-sonnet-20241022"})):
        response = client.post(url, json=body, headers=idem(user, key))
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "Idempotency key reused"
        assert await snapshot(db, user.id) == before


async def test_keys_belong_to_their_user(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    alice, bob = users.create(credits=50), users.create(credits=50)
    key = uuid.uuid4().hex
    a = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(alice, key))
    b = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(bob, key))
    assert a.status_code == b.status_code == 200
    assert "Idempotent-Replayed" not in b.headers
    assert a.json()["projectPath"] != b.json()["projectPath"]
    assert (await charges(db, alice.id))[0] == (await charges(db, bob.id))[0] == 1


async def test_a_retry_while_the_first_attempt_runs_is_409_then_replays(
    stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    key = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30) as http:
        slow_headers = idem(user, key, **{"X-Sim-Fault": "slow:1500"})
        slow = asyncio.create_task(http.post("/api/generate-structure", json=STRUCTURE, headers=slow_headers))
        # Wait until the first attempt holds its credits (it has claimed the key before that).
        for _ in range(200):
            if await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user.id):
                break
            await asyncio.sleep(0.02)
        during = await http.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
        first = await slow
        after = await http.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert first.status_code == 200, first.text
    assert during.status_code == 409, during.text
    assert during.json()["error"] == "Request in progress"
    assert int(during.headers["Retry-After"]) >= 1
    assert after.status_code == 200 and after.headers["Idempotent-Replayed"] == "true"
    assert after.json() == first.json()
    assert await charges(db, user.id) == (1, Decimal(first.headers["X-Credits-Charged"]), 1)


async def test_many_concurrent_retries_are_charged_once(
    stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    key = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30) as http:
        replies = await asyncio.gather(*(
            http.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key)) for _ in range(12)
        ))
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) <= {200, 409}, statuses
    successes = [r for r in replies if r.status_code == 200]
    assert successes
    assert len({r.json()["projectPath"] for r in successes}) == 1
    ok_rows, cost, projects = await charges(db, user.id)
    assert (ok_rows, projects) == (1, 1)
    assert users.balance(user) == 100 - cost


async def test_a_failed_attempt_frees_the_key_and_charges_nothing(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    key = uuid.uuid4().hex
    failed = client.post("/api/generate-structure", json=STRUCTURE,
                         headers=idem(user, key, **{"X-Sim-Fault": "server_error"}))
    assert failed.status_code == 502, failed.text
    assert users.balance(user) == 100
    # The key's record is the failed attempt's hold, voided: it charged nothing, so a retry runs afresh.
    assert await db.fetchval(
        """SELECT r.outcome FROM credit_holds h JOIN credit_hold_resolutions r ON r.hold_id = h.id
           WHERE h.user_id = $1 AND h.idempotency_key = $2""", user.id, key) == "voided"

    retried = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    ok_rows, cost, projects = await charges(db, user.id)
    assert (ok_rows, projects) == (1, 1)
    assert cost == Decimal(retried.headers["X-Credits-Charged"])


async def test_a_402_frees_the_key_so_a_retry_after_a_top_up_runs(
    client: httpx.Client, users: UserFactory, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    user = users.create(credits=2)
    key = uuid.uuid4().hex
    refused = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert refused.status_code == 402
    grant = client.post("/api/admin/grant-credits", headers=admin_headers,
                        json={"username": user.username, "credits": 50})
    assert grant.status_code == 200
    retried = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert retried.status_code == 200, retried.text
    assert (await charges(db, user.id))[0] == 1


async def test_invalid_keys_are_refused_before_anything_happens(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    for bad in (b"x" * 256, b"has space", b"tab\there", "ünïcode".encode()):
        headers = {**user.headers, "Idempotency-Key": bad}
        response = client.post("/api/generate-structure", json=STRUCTURE, headers=headers)  # type: ignore[dict-item]
        assert response.status_code == 422, (bad, response.text)
    assert await snapshot(db, user.id) == before


async def test_an_attempt_abandoned_after_its_result_was_staged_is_never_delivered_unpaid(
    stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The edge died after Claude answered and the result was staged, before it committed the hold. Played
    here through the services' own gRPC: Prepare, Reserve (with the key, a 2 s hold), Execute — then nothing.
    While that hold is pending a retry is 409; once it has expired (nothing charged) the retry runs afresh and
    is charged once, and the abandoned attempt's result is never part of the user's projects."""
    user = users.create(credits=100)
    key, hold_id, request_id = uuid.uuid4().hex, str(uuid.uuid4()), f"req_{uuid.uuid4().hex}"
    # Exactly the request the edge builds for this body (the key's fingerprint must match).
    gen = structure_request(user.id, STORY, "three-act")
    digest = fingerprint(gen)
    gen.request_id = request_id
    async with stack.channel("generation") as gch, stack.channel("billing") as bch:
        generation, billing = generation_pb2_grpc.GenerationStub(gch), billing_pb2_grpc.BillingStub(bch)
        plan = await generation.Prepare(gen)
        required = Decimal(plan.required)
        reserved = await billing.Reserve(billing_pb2.ReserveRequest(
            hold_id=hold_id, user_id=user.id, amount=str(required), endpoint="/api/generate-structure",
            request_id=request_id, ttl_seconds=2, idempotency_key=key, fingerprint=digest))
        assert reserved.ok
        executed = await generation.Execute(generation_pb2.ExecuteRequest(plan=plan, hold_id=hold_id,
                                                                          budget=str(required)))
        assert executed.ok

    during = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert during.status_code == 409, during.text
    assert client.get(f"/api/projects/{executed.project_path}", headers=user.headers).status_code == 404

    for _ in range(100):  # the session stack sweeps every 0.5 s
        outcome = await db.fetchval("SELECT outcome FROM credit_hold_resolutions WHERE hold_id = $1",
                                    uuid.UUID(hold_id))
        if outcome is not None:
            break
        await asyncio.sleep(0.1)
    assert outcome == "expired"
    retried = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    body = parse(retried)
    assert body["projectPath"] != executed.project_path and body["requestId"] != request_id
    charged = Decimal(retried.headers["X-Credits-Charged"])
    assert charged > 0
    replay = client.post("/api/generate-structure", json=STRUCTURE, headers=idem(user, key))
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert parse(replay) == body
    assert await charges(db, user.id) == (1, charged, 1)
    listed = client.get("/api/projects", headers=user.headers).json()["projects"]
    assert [p["projectPath"] for p in listed] == [body["projectPath"]]
    assert users.balance(user) == 100 - charged


# --------------------------------------------------------------------------- grants


def grant(client: httpx.Client, admin_headers: dict[str, str], key: str, **body: Any) -> httpx.Response:
    return client.post("/api/admin/grant-credits", headers={**admin_headers, "Idempotency-Key": key}, json=body)


async def test_grant_with_the_same_key_and_another_body_is_422(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory, db: asyncpg.Connection
) -> None:
    alice, bob = users.create(credits=1), users.create(credits=1)
    key = uuid.uuid4().hex
    first = grant(client, admin_headers, key, username=alice.username, credits=5)
    assert first.status_code == 200, first.text
    before = (await snapshot(db, alice.id), await snapshot(db, bob.id))
    for body in ({"username": alice.username, "credits": 6}, {"username": bob.username, "credits": 5},
                 {"username": alice.username, "credits": 5, "type": "purchase"},
                 {"username": alice.username, "credits": 5, "notes": "another reason"}):
        response = grant(client, admin_headers, key, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "Idempotency key reused"
    assert (await snapshot(db, alice.id), await snapshot(db, bob.id)) == before
    replay = grant(client, admin_headers, key, username=alice.username, credits=5)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["transaction_id"] == first.json()["transaction_id"]
    assert users.balance(alice) == 6 and users.balance(bob) == 1


async def test_concurrent_grants_with_one_key_grant_once(
    stack: Stack, admin_headers: dict[str, str], users: UserFactory
) -> None:
    user = users.create(credits=1)
    key = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30) as http:
        replies = await asyncio.gather(*(
            http.post("/api/admin/grant-credits", headers={**admin_headers, "Idempotency-Key": key},
                      json={"username": user.username, "credits": 7}) for _ in range(10)
        ))
    assert [r.status_code for r in replies] == [200] * 10
    assert len({r.json()["transaction_id"] for r in replies}) == 1
    assert sum(1 for r in replies if not r.json()["replayed"]) == 1
    assert users.balance(user) == 8
