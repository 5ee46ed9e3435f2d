"""No API key leaks: not in any process's log (at DEBUG, access log included), not in /metrics, not in any
response we did not ask for it in, not in gRPC error details, not in the database.

This module runs its OWN stack with LOG_LEVEL=DEBUG, so the most verbose logging of every process is what
gets searched. The traffic puts keys everywhere a client might: the header, `?api_key=`, invalid forms
(rotated, disabled, upper-cased, truncated, URL-encoded, the bare secret), paths, JSON bodies, field
names and other headers, on every kind of answer (200, 400, 401, 402, 403, 404, 405, 422, simulator
faults). A key counts as leaked if more than 12 characters of its secret part appear anywhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest

from devstack.embedded_pg import tool_path
from protos import auth_pb2, auth_pb2_grpc, generation_pb2, generation_pb2_grpc
from tests.helpers import key_leaks, structure_request
from tests.stack import Stack

STORY = {"storyInput": {"title": "Secrets", "logline": "Nobody tells."}, "template": "three-act"}


@dataclass
class Traffic:
    """Every key the test saw issued, and every answer it got (except the ones meant to show a key)."""

    stack: Stack
    http: httpx.Client
    keys: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    def call(self, method: str, url: str, *, shows_key: bool = False, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        self.statuses.add(response.status_code)
        if not shows_key:
            self.answers.append(f"{response.status_code} {response.headers.multi_items()} {response.text}")
        return response

    def create_user(self, name: str, credits: int | float) -> tuple[str, str]:
        response = self.call("POST", "/api/admin/create-user", shows_key=True, headers=self.admin,
                             json={"username": name, "email": f"{name}@example.test", "initialCredits": credits})
        assert response.status_code == 201, response.text
        key = response.json()["user"]["api_key"]
        self.keys.append(key)
        return name, key

    def rotate(self, username: str) -> str:
        response = self.call("POST", f"/api/admin/users/{username}/rotate-key", shows_key=True, headers=self.admin)
        assert response.status_code == 200, response.text
        key: str = response.json()["api_key"]
        self.keys.append(key)
        return key

    @property
    def admin(self) -> dict[str, str]:
        return {"X-API-Key": self.stack.admin_key}


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("secrecy")).start({"LOG_LEVEL": "DEBUG", "SIM_LOG_LEVEL": "debug"})
    try:
        yield running
    finally:
        running.stop()


def invalid_forms(key: str) -> list[str]:
    secret = key.split("_", 1)[1]
    return [key.upper(), key + "0", key[:-1], key[:30], secret, f" {key}x ", key.replace("_", "-")]


@pytest.fixture(scope="module")
def traffic(debug_stack: Stack) -> Iterator[Traffic]:
    with httpx.Client(base_url=debug_stack.edge_url, timeout=60) as http:
        t = Traffic(debug_stack, http, keys=[debug_stack.admin_key])
        run_traffic(t)
        yield t


def run_traffic(t: Traffic) -> None:
    rich, rich_key = t.create_user("rich_one", 100)
    poor, poor_key = t.create_user("poor_one", 1)
    gone, gone_key = t.create_user("gone_one", 10)
    old_key = rich_key
    rich_key = t.rotate(rich)
    rotated_twice = t.rotate(rich)
    stale_key, rich_key = rich_key, rotated_twice
    assert t.call("POST", f"/api/admin/users/{gone}/disable", headers=t.admin).status_code == 200
    header = {"X-API-Key": rich_key}

    # 200s: header and query string, reads and metered calls (which log and record usage).
    for url in ("/api/my-stats", "/api/my-transactions", "/api/projects", "/api/templates", "/api/models"):
        assert t.call("GET", url, headers=header).status_code == 200
        assert t.call("GET", url, params={"api_key": rich_key}).status_code == 200
    made = t.call("POST", "/api/generate-structure", headers=header, json=STORY)
    assert made.status_code == 200, made.text
    project = made.json()["projectPath"]
    assert t.call("POST", f"/api/generate-structure?api_key={rich_key}", json=STORY).status_code == 200
    assert t.call("GET", f"/api/projects/{project}/export", params={"api_key": rich_key}).status_code == 200
    assert t.call("GET", "/api/admin/users", params={"api_key": t.stack.admin_key}).status_code == 200
    for url in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        t.call("GET", url, params={"api_key": rich_key})

    # 401: missing, rotated, disabled and malformed keys, in the header, the query (raw and URL-encoded).
    assert t.call("GET", "/api/my-stats").status_code == 401
    for bad in [old_key, stale_key, gone_key, *invalid_forms(rich_key), *invalid_forms(t.stack.admin_key)]:
        for kwargs in ({"headers": {"X-API-Key": bad.strip()}}, {"params": {"api_key": bad}}):
            assert t.call("GET", "/api/my-stats", **kwargs).status_code == 401, bad
        assert t.call("GET", f"/api/my-stats?api_key={quote(bad, safe='')}").status_code == 401
        assert t.call("POST", "/api/generate-structure", headers={"X-API-Key": bad.strip()},
                      json=STORY).status_code == 401
    assert t.call("GET", "/api/my-stats", headers={"Authorization": f"Bearer {rich_key}"}).status_code == 401

    # 403: a user key (header and query) on admin routes, with keys in the path and body too.
    assert t.call("GET", "/api/admin/users", headers=header).status_code == 403
    assert t.call("POST", f"/api/admin/users/{rich_key}/disable?api_key={rich_key}").status_code == 403
    assert t.call("POST", "/api/admin/grant-credits", params={"api_key": rich_key},
                  json={"username": rich_key, "credits": 1}).status_code == 403

    # 404 and 405: keys in paths (answers must not quote them back).
    for url in (f"/api/projects/{rich_key}", f"/api/projects/{rich_key}/export", f"/api/templates/{rich_key}",
                f"/api/{rich_key}", f"/api/admin/usage-stats/{rich_key}"):
        headers = t.admin if "admin" in url else header
        assert t.call("GET", url, headers=headers).status_code in (400, 404, 422), url
    assert t.call("POST", f"/api/generate-scene/{rich_key}/{rich_key}", headers=header).status_code == 404
    assert t.call("POST", f"/api/admin/users/{rich_key}/rotate-key", headers=t.admin).status_code == 422
    assert t.call("DELETE", f"/api/my-stats?api_key={rich_key}").status_code == 405

    # 400 and 422: keys as field values, field names, header values and in malformed JSON.
    bodies: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/api/admin/create-user", {"username": rich_key, "email": rich_key}, 422),
        ("POST", "/api/admin/create-user", {"username": "fine_name", "email": "f@example.test", rich_key: 1}, 422),
        ("POST", "/api/admin/create-user", {"username": "fine_name", "email": f"{rich_key}@example.test"}, 422),
        ("POST", "/api/admin/grant-credits", {"username": rich, "credits": rich_key}, 422),
        ("POST", "/api/admin/grant-credits", {"username": rich_key[:64], "credits": 1}, 404),
    ]
    for method, url, body, status in bodies:
        assert t.call(method, url, headers=t.admin, json=body).status_code == status, (url, body)
    generation_bodies: list[tuple[dict[str, Any], int]] = [
        ({**STORY, "template": rich_key}, 422),  # longer than a template id may be
        ({**STORY, "template": rich_key[5:]}, 404),  # the bare secret: "Template '…' not found"
        ({**STORY, "model": rich_key}, 400),  # "Unknown model '…'"
        ({**STORY, rich_key: True}, 422),
        ({"storyInput": rich_key, "template": "three-act"}, 422),
        ({"projectPath": rich_key}, 422),
    ]
    for body, status in generation_bodies:
        response = t.call("POST", "/api/generate-structure", headers=header, json=body)
        assert response.status_code == status, (body, response.text)
    assert t.call("POST", "/api/generate-dialogue", headers=header,
                  json={"projectPath": rich_key[:100], "structureKey": rich_key[:64], "sceneIndex": 0}
                  ).status_code == 404
    assert t.call("POST", "/api/generate-structure", headers={**header, "Content-Type": "application/json"},
                  content=f'{{"storyInput": "{rich_key}"'.encode()).status_code == 400
    assert t.call("GET", "/api/my-transactions", headers=header, params={"limit": rich_key}).status_code == 422
    assert t.call("POST", "/api/generate-structure", headers={**header, "X-Sim-Fault": rich_key},
                  json=STORY).status_code == 422  # longer than the header may be
    assert t.call("POST", "/api/admin/grant-credits", headers={**t.admin, "Idempotency-Key": "x" * 201 + rich_key},
                  json={"username": rich, "credits": 1}).status_code == 422

    # 402 and simulator faults (502/503), also with the key in the query string.
    assert t.call("POST", "/api/generate-structure", params={"api_key": poor_key}, json=STORY).status_code == 402
    for fault in ("server_error", "rate_limit", "overloaded", "bad_schema", rich_key[5:69]):
        response = t.call("POST", f"/api/generate-structure?api_key={rich_key}", headers={"X-Sim-Fault": fault},
                          json=STORY)
        assert response.status_code in (400, 422, 502, 503), (fault, response.text)

    # Rotation and disabling through the CLI (another writer) as well.
    cli = [sys.executable, "-m", "services.auth.cli"]
    out = subprocess.run([*cli, "rotate-key", poor], env=t.stack.env, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    t.keys.append(out.strip().rsplit(" ", 1)[-1])
    subprocess.run([*cli, "disable", poor], env=t.stack.env, capture_output=True, text=True, timeout=60, check=True)
    assert t.call("GET", "/api/my-stats", params={"api_key": t.keys[-1]}).status_code == 401

    metrics = t.call("GET", "/metrics")
    assert metrics.status_code == 200


def process_logs(stack: Stack) -> dict[str, str]:
    """Every log file under the stack's data directory: the five processes' and PostgreSQL's."""
    files = sorted(stack.data_dir.rglob("*.log"))
    assert {p.name for p in files} >= {"simulator.log", "auth.log", "billing.log", "generation.log", "edge.log"}
    return {str(p.relative_to(stack.data_dir)): p.read_text(errors="replace") for p in files}


def test_the_traffic_covered_every_kind_of_answer(traffic: Traffic) -> None:
    assert traffic.statuses >= {200, 400, 401, 402, 403, 404, 405, 422, 502, 503}
    assert len(traffic.keys) >= 7  # admin, three users, two rotations, one CLI rotation


def test_no_key_in_any_log_metric_or_answer(traffic: Traffic) -> None:
    logs = process_logs(traffic.stack)
    # DEBUG really is on, and the edge wrote its access log, so there was something to search.
    assert " DEBUG " in logs["logs/auth.log"] and "edge.access" in logs["logs/edge.log"]
    places = {**logs, "responses": "\n".join(traffic.answers)}
    for key in traffic.keys:
        for place, text in places.items():
            assert key_leaks(key, text) == [], f"{key[:11]}… leaked into {place}"


def test_access_log_has_one_line_per_request_without_query_or_keys(traffic: Traffic) -> None:
    lines = [line for line in traffic.stack.log("edge").splitlines() if " edge.access: " in line]
    assert len(lines) >= len(traffic.answers)
    pattern = re.compile(r" edge\.access: (GET|POST|DELETE) (/\S*) (\d{3}) \d+\.\dms req=req_[0-9a-f]{32} "
                         r"user=(\d+|-)$")
    for line in lines:
        match = pattern.search(line)
        assert match, line
        assert "?" not in match[2] and "api_key" not in line
    # The metered call's line carries its request id (the one in the usage row) and the caller.
    assert any(re.search(r"POST /api/generate-structure 200 .* user=\d+$", line) for line in lines)
    assert any(re.search(r"GET /api/my-stats 401 .* user=-$", line) for line in lines)


async def test_no_plaintext_key_in_any_table(traffic: Traffic) -> None:
    dump = subprocess.run([tool_path("pg_dump"), "--data-only", traffic.stack.dsn], capture_output=True, text=True,
                          timeout=120, check=True).stdout
    assert "COPY public.user_accounts" in dump and "\\\\x" in dump  # the hashes are there, as bytea
    for key in traffic.keys:
        assert key_leaks(key, dump) == [], f"{key[:11]}… stored in the database"
        assert key.encode().hex() not in dump, f"{key[:11]}… stored as bytes"


@pytest.mark.parametrize("name", ["GetUser", "RotateKey", "DisableUser", "CreateUser"])
async def test_grpc_errors_never_carry_a_key(traffic: Traffic, name: str) -> None:
    key = traffic.keys[-2]
    async with traffic.stack.channel("auth") as channel:
        auth = auth_pb2_grpc.AuthStub(channel)
        validated = await auth.ValidateKey(auth_pb2.ValidateKeyRequest(api_key=key.upper()))
        assert validated.valid is False and key_leaks(key, str(validated)) == []
        request: Any = (auth_pb2.CreateUserRequest(username=key, email=key) if name == "CreateUser"
                        else auth_pb2.GetUserRequest(username=key[5:]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(auth, name)(request)
    error = raised.value
    assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert key_leaks(key, f"{error.details()} {error.debug_error_string()} {error.trailing_metadata()}") == []


@pytest.mark.parametrize("call", ["GetTemplate", "Prepare-model", "Prepare-template"])
async def test_generation_errors_quoting_input_never_carry_a_key(traffic: Traffic, call: str) -> None:
    key = traffic.keys[-2]
    async with traffic.stack.channel("generation") as channel:
        generation = generation_pb2_grpc.GenerationStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            if call == "GetTemplate":
                await generation.GetTemplate(generation_pb2.GetTemplateRequest(id=key))
            else:
                await generation.Prepare(structure_request(
                    1, {"title": "x"}, key if call.endswith("template") else "three-act",
                    model=key if call.endswith("model") else "", request_id="req_secrecy"))
    error = raised.value
    assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert key_leaks(key, f"{error.details()} {error.debug_error_string()}") == []

