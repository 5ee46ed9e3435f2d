"""One request id followed through every process's log: a real stack with LOG_FORMAT=json (and DEBUG, so
each service writes a line per call it serves), one paid call, one failed generation, one refused key, one
402 and one database outage. Every line of the four services parses as JSON with the schema's keys, each
call's id is in every service it touched and in its usage row, the guide's "Logs to Monitor" appear as
their named events, and no API key appears anywhere."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from common.logging import SCHEMA
from protos import billing_pb2, billing_pb2_grpc
from services.auth import keys
from tests.helpers import TestUser, UserFactory, key_leaks
from tests.reliability.support import STRUCTURE_BODY, own_stack, structure_call
from tests.stack import Stack

SERVICES = ("edge", "auth", "billing", "generation")
#: The development helpers the stack runs log through the same renderer (the simulator's start-up banner,
#: printed, aside).
HELPERS = ("simulator", "localstripe")
Line = dict[str, Any]


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every paid call here is "high" (any tokens exceed 1), so the event can be checked against its usage row.
    settings = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "EDGE_HIGH_TOKENS_THRESHOLD": "1"}
    with own_stack(tmp_path_factory, "logs", settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(json_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=json_stack.edge_url, timeout=30) as http:
        yield http


class RecordingFactory(UserFactory):
    """Remembers every key it issued, for the last test to look for in the logs."""

    issued: list[str]

    def create(self, credits: int = 100, prefix: str = "user") -> TestUser:
        user = super().create(credits, prefix)
        self.issued.append(user.api_key)
        return user


@pytest.fixture(scope="module")
def users(json_stack: Stack, client: httpx.Client) -> RecordingFactory:
    factory = RecordingFactory(client, {"X-API-Key": json_stack.admin_key})
    factory.issued = [json_stack.admin_key]
    return factory


def parsed(stack: Stack, name: str) -> tuple[list[Line], list[str]]:
    """A process's log as JSON objects, and the lines that are not one (there must be none)."""
    lines, bad = [], []
    for text in stack.log(name).splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            bad.append(text)
            continue
        (lines if isinstance(line, dict) else bad).append(line)
    return lines, bad


def wait_for_lines(stack: Stack, what: str, found: Callable[[dict[str, list[Line]]], bool],
                   timeout: float = 20) -> dict[str, list[Line]]:
    """Every service's parsed log once `found` holds of it (a line is written after the answer it logs)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = {name: parsed(stack, name)[0] for name in SERVICES}
        if found(logs):
            return logs
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def with_id(logs: dict[str, list[Line]], request_id: str) -> dict[str, list[Line]]:
    return {name: [line for line in lines if line["request_id"] == request_id] for name, lines in logs.items()}


def request_id_of(response: httpx.Response) -> str:
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"req_[0-9a-f]{32}", request_id), request_id
    return request_id


async def usage_rows(stack: Stack, user: TestUser) -> list[tuple[str, str]]:
    async with stack.database() as db:
        rows = await db.fetch("SELECT request_id, error_message FROM usage_logs WHERE user_id = $1 ORDER BY id",
                              user.id)
    return [(r["request_id"], r["error_message"] or "") for r in rows]


async def test_a_paid_call_is_followed_through_every_service_and_its_usage_row(
        json_stack: Stack, client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=100)
    response = structure_call(client, user)
    assert response.status_code == 200, response.text
    request_id = request_id_of(response)
    assert response.json()["requestId"] == request_id

    # What each service did for it, each on a line of its own under the same id (the access line and the
    # services' lines are written after the answer: waited for, with a deadline).
    expected = [("edge", "POST /api/generate-structure 200 "), ("auth", "/fsg.auth.v1.Auth/ValidateKey ok"),
                ("billing", "Reserve (batch item) ok"), ("billing", "Commit (batch item) ok"),
                ("generation", "/fsg.generation.v1.Generation/Execute ok")]
    logs = wait_for_lines(json_stack, "the call's id on each service's line", lambda logs: all(
        any(text in line["message"] for line in with_id(logs, request_id)[name]) for name, text in expected))
    mine = with_id(logs, request_id)
    assert [line for line in mine["edge"] if line["message"].startswith("POST /api/generate-structure 200 ")]
    assert {line["user_id"] for line in mine["edge"] if line["logger"] == "edge.access"} == {user.id}
    # The caller travels with the id once the edge knows it (auth is asked before it does).
    assert {line["user_id"] for name in ("billing", "generation") for line in mine[name]} == {user.id}
    assert await usage_rows(json_stack, user) == [(request_id, "")]

    [high] = [line for line in mine["edge"] if line["event"] == "usage.high_tokens"]
    async with json_stack.database() as db:
        row = await db.fetchrow("SELECT input_tokens, output_tokens, model_used FROM usage_logs WHERE request_id = $1",
                                request_id)
    assert (high["input_tokens"], high["output_tokens"], high["model"]) == (
        row["input_tokens"], row["output_tokens"], row["model_used"])
    assert high["level"] == "warning" and high["threshold"] == 1 and high["user_id"] == user.id


async def test_a_failed_generation_names_its_id_in_the_logs_and_its_usage_row(
        json_stack: Stack, client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=100)
    response = structure_call(client, user, fault="server_error")
    assert response.status_code == 502, response.text
    request_id = request_id_of(response)
    assert response.json()["requestId"] == request_id
    [(logged_id, error)] = await usage_rows(json_stack, user)
    assert logged_id == request_id and error  # the failed row, under the edge's id
    logs = wait_for_lines(json_stack, "the failed call's id in every service",
                          lambda logs: all(with_id(logs, request_id).values()))
    assert any("/fsg.billing.v1.Billing/Release ok" in line["message"] for line in with_id(logs, request_id)["billing"])


def test_a_refused_key_is_an_auth_failed_event_in_the_edge_and_in_auth(
        json_stack: Stack, client: httpx.Client) -> None:
    key = keys.new_key(False)  # well formed, never issued
    response = client.get("/api/my-stats", headers={"X-API-Key": key})
    assert response.status_code == 401
    request_id = request_id_of(response)
    logs = wait_for_lines(json_stack, "auth.failed in the edge and in auth", lambda logs: all(
        any(line["event"] == "auth.failed" for line in lines) for lines in
        (with_id(logs, request_id)["edge"], with_id(logs, request_id)["auth"])))
    mine = with_id(logs, request_id)
    [edge] = [line for line in mine["edge"] if line["event"] == "auth.failed"]
    [auth] = [line for line in mine["auth"] if line["event"] == "auth.failed"]
    assert (edge["level"], edge["reason"], auth["reason"]) == ("warning", "invalid", "unknown")
    assert edge["key_prefix"] == auth["key_prefix"] == key[:11]
    assert key_leaks(key, json.dumps(mine)) == []

    missing = client.get("/api/my-stats")
    assert missing.status_code == 401
    missing_id = request_id_of(missing)
    logs = wait_for_lines(json_stack, "auth.failed for a missing key", lambda logs: any(
        line["event"] == "auth.failed" for line in with_id(logs, missing_id)["edge"]))
    [line] = [line for line in with_id(logs, missing_id)["edge"] if line["event"] == "auth.failed"]
    assert line["reason"] == "missing"


def test_a_402_is_a_credits_limit_hit_event_under_its_id(
        json_stack: Stack, client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=0)
    response = structure_call(client, user)
    assert response.status_code == 402, response.text
    request_id = request_id_of(response)
    logs = wait_for_lines(json_stack, "credits.limit_hit", lambda logs: any(
        line["event"] == "credits.limit_hit" for line in with_id(logs, request_id)["edge"]))
    [hit] = [line for line in with_id(logs, request_id)["edge"] if line["event"] == "credits.limit_hit"]
    assert (hit["user_id"], hit["endpoint"], hit["owes"]) == (user.id, "/api/generate-structure", False)
    assert Decimal(hit["required"]) == Decimal(str(response.json()["required"])) and Decimal(hit["available"]) == 0
    # Billing recorded its credit-limit alert for the same refusal, under the same id.
    assert any(line["event"] == "alerts.credit_limit_reached" and line["user_id"] == user.id
               for line in with_id(logs, request_id)["billing"])


def test_an_edge_with_worker_processes_logs_in_the_schema_too(json_stack: Stack) -> None:
    """EDGE_WORKERS=2: uvicorn spawns the workers, which inherit no logging set up by their parent; each sets
    up the same handler (and structlog) itself, so its named events are JSON lines like any other."""
    key = keys.new_key(False)
    with json_stack.replica("edge-workers", "edge", {"EDGE_WORKERS": "2"}) as url, httpx.Client(
            base_url=url, timeout=30) as http:
        response = http.get("/api/my-stats", headers={"X-API-Key": key})
        assert response.status_code == 401
        request_id = request_id_of(response)
        deadline = time.monotonic() + 20
        while not any(line.get("request_id") == request_id and line["event"] == "auth.failed"
                      for line in parsed(json_stack, "edge-workers")[0]):
            assert time.monotonic() < deadline, json_stack.log("edge-workers")[-2000:]
            time.sleep(0.1)
    lines, bad = parsed(json_stack, "edge-workers")
    assert bad == [] and all(list(line)[:len(SCHEMA)] == list(SCHEMA) for line in lines)
    assert key_leaks(key, json_stack.log("edge-workers")) == []


async def test_each_item_of_a_batch_is_logged_under_its_own_id(json_stack: Stack, users: RecordingFactory) -> None:
    """A batch RPC carries many requests and no x-request-id of its own: billing binds each item's id (from the
    payload) while that item runs, so each item's line names its own request."""
    user = users.create(credits=100)
    ids = [f"req_{uuid.uuid4().hex}" for _ in range(3)]
    holds = [str(uuid.uuid4()) for _ in ids]
    async with json_stack.channel("billing") as channel:
        stub = billing_pb2_grpc.BillingStub(channel)
        reply = await stub.ReserveBatch(billing_pb2.ReserveBatchRequest(items=[
            billing_pb2.ReserveRequest(hold_id=hold, user_id=user.id, amount="1", endpoint="/api/generate-scene",
                                       request_id=request_id) for hold, request_id in zip(holds, ids, strict=True)]))
        assert [item.status.code for item in reply.items] == [0, 0, 0]
        for hold, request_id in zip(holds, ids, strict=True):
            await stub.Release(billing_pb2.ReleaseRequest(hold_id=hold, user_id=user.id, usage=billing_pb2.Usage(
                endpoint="/api/generate-scene", method="POST", request_id=request_id, error_message="test")))
    logs = wait_for_lines(json_stack, "a line per batch item", lambda logs: all(
        any("Reserve (batch item) ok" in line["message"] for line in with_id(logs, request_id)["billing"])
        for request_id in ids))
    assert {line["user_id"] for request_id in ids for line in with_id(logs, request_id)["billing"]} == {user.id}
    batch = [line for line in logs["billing"] if "/fsg.billing.v1.Billing/ReserveBatch ok" in line["message"]]
    assert batch and batch[-1]["request_id"] is None  # the batch itself is nobody's request
    assert sorted(request_id for request_id, _ in await usage_rows(json_stack, user)) == sorted(ids)


def test_a_database_outage_is_a_db_connection_problem_event(json_stack: Stack, client: httpx.Client,
                                                            users: UserFactory) -> None:
    """Last in this module: the stack's database goes away (and comes back for the checks that follow)."""
    user = users.create(credits=100)
    assert client.get("/api/my-limits", headers=user.headers).status_code == 200  # the edge now knows the key
    assert json_stack.postgres is not None and json_stack.postgres.is_running()
    json_stack.postgres.stop()
    assert not json_stack.postgres.is_running()
    try:
        response = client.post("/api/generate-structure", headers=user.headers, json=STRUCTURE_BODY)
        assert response.status_code == 503, response.text
        request_id = request_id_of(response)
        logs = wait_for_lines(json_stack, "db.connection_problem", lambda logs: any(
            line["event"] == "db.connection_problem" for lines in with_id(logs, request_id).values()
            for line in lines))
    finally:
        json_stack.postgres.start()
    problems = [line for lines in with_id(logs, request_id).values() for line in lines
                if line["event"] == "db.connection_problem"]
    assert problems and all(line["level"] == "warning" and line["where"] == "request" and line["error"]
                            for line in problems), problems


def test_every_line_is_json_with_the_schema_and_no_key_anywhere(json_stack: Stack, users: RecordingFactory
                                                                  ) -> None:
    """After the calls above: the whole of each service's log, and every key issued in this module."""
    everything = ""
    for name in SERVICES:
        lines, bad = parsed(json_stack, name)
        assert bad == [], (name, bad[:3])
        assert lines, name
        for line in lines:
            assert list(line)[:len(SCHEMA)] == list(SCHEMA), line
            assert line["service"] == name and line["level"] in ("debug", "info", "warning", "error", "critical")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line
        everything += json_stack.log(name)
    for name in HELPERS:
        lines, bad = parsed(json_stack, name)
        assert [text for text in bad if not text.startswith("*** SIMULATED CLAUDE")] == [], (name, bad[:3])
        assert lines and {line["service"] for line in lines} == {name}
        assert all(list(line)[:len(SCHEMA)] == list(SCHEMA) for line in lines)
        everything += json_stack.log(name)
    assert len(users.issued) >= 5
    for key in users.issued:
        assert key_leaks(key, everything) == []
