"""Authorization: a user key gets 403 on every admin route (walked from the OpenAPI schema, so a new admin
route is covered without editing this file), and a disabled user's or a rotated-away key stops working
within one second on every edge, even though edges cache validated keys.

Cross-user project access (read, export in each format, delete, every generation route that names a
project → 404, no hold, no usage row, the owner's project unchanged) is tested in
tests/generation/test_endpoints.py::test_another_users_project_is_not_found.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

#: The guarantee: a disabled user's or a replaced key is refused this soon after the change returns.
REFUSED_WITHIN_S = 1.0
POLL_EVERY_S = 0.05


# --------------------------------------------------------------------------- admin routes from the schema


def admin_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) for every operation under /api/admin."""
    return [(method.upper(), path, operation) for path, item in schema["paths"].items()
            if path.startswith("/api/admin") for method, operation in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:  # Optional[X]: take X
        node = next(n for n in node["anyOf"] if n.get("type") != "null")
        return resolve(schema, node)
    return node


def plausible(name: str, node: dict[str, Any], target: str, fresh: str) -> Any:
    """A value that would be accepted for a field or parameter, aimed at the `target` user."""
    if name == "username":
        return fresh if fresh else target
    if name == "email":
        return f"{fresh or target}@example.test"
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    kind = node.get("type")
    if kind in ("integer", "number"):
        return max(1, node.get("minimum", 1), node.get("exclusiveMinimum", 0) + 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return target


def build_request(schema: dict[str, Any], path: str, operation: dict[str, Any], target: str) -> tuple[
    str, dict[str, Any], Any
]:
    """(url, query params, json body) filling every parameter and body field with plausible values."""
    fresh = f"new_{uuid.uuid4().hex[:12]}" if "create" in path else ""
    url, params = path, {}
    for param in operation.get("parameters", []):
        value = plausible(param["name"], resolve(schema, param.get("schema", {})), target, "")
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(value))
        elif param["in"] == "query" and param.get("required"):
            params[param["name"]] = value
    body = None
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        model = resolve(schema, content["schema"])
        body = {field: plausible(field, resolve(schema, spec), target, fresh)
                for field, spec in model.get("properties", {}).items()
                if field in model.get("required", []) or field in ("initialCredits", "credits")}
    return url, params, body


async def account_state(db: asyncpg.Connection, username: str) -> tuple[Any, ...]:
    user = await db.fetchrow("""SELECT id, api_key_hash, api_key_prefix, disabled_at, updated_at, email, is_admin
                                FROM user_accounts WHERE lower(username) = lower($1)""", username)
    if user is None:
        return ()
    account = await db.fetchrow("SELECT available, held FROM credit_accounts WHERE user_id = $1", user["id"])
    counts = await db.fetchrow(
        """SELECT (SELECT count(*) FROM credit_transactions WHERE user_id = $1) AS transactions,
                  (SELECT count(*) FROM credit_holds WHERE user_id = $1) AS holds,
                  (SELECT count(*) FROM usage_logs WHERE user_id = $1) AS usage""", user["id"])
    return (*user.values(), *(account.values() if account else ()), *counts.values())


async def test_a_user_key_is_refused_on_every_admin_route(client: httpx.Client, users: UserFactory,
                                                          db: asyncpg.Connection) -> None:
    schema = client.get("/openapi.json").json()
    operations = admin_operations(schema)
    assert len(operations) >= 7, operations  # the guide's admin routes, at least
    caller, victim, control = users.create(credits=10), users.create(credits=10), users.create(credits=10)
    before = {u.username: await account_state(db, u.username) for u in (caller, victim)}
    created: list[str] = []

    for method, path, operation in operations:
        url, params, body = build_request(schema, path, operation, victim.username)
        if body and "username" in body and body["username"] != victim.username:
            created.append(body["username"])
        anonymous = client.request(method, url, params=params, json=body)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "API key required", (method, url)
        for how in ({"headers": caller.headers}, {"params": {**params, "api_key": caller.api_key}}):
            kwargs: dict[str, Any] = {"params": params, **how}
            refused = client.request(method, url, json=body, **kwargs)
            assert refused.status_code == 403, (method, url, refused.text)
            assert refused.json() == {"error": "Admin access required",
                                      "message": "This endpoint requires an admin API key"}

    assert {u: await account_state(db, u) for u in before} == before
    for name in created:
        assert await account_state(db, name) == (), f"{name} was created"

    # The same requests are real ones: with an admin key (aimed at another user) they do act.
    worked = 0
    for method, path, operation in operations:
        url, params, body = build_request(schema, path, operation, control.username)
        response = client.request(method, url, params=params, json=body, headers=users.admin_headers)
        assert response.status_code not in (401, 403) and response.status_code < 500, (method, url, response.text)
        worked += response.is_success
    assert worked >= 7


# --------------------------------------------------------------------------- revocation reaches every edge


@pytest.fixture(scope="module")
def second_edge(stack: Stack) -> Iterator[str]:
    """Another edge process on its own port against the same services, with its own key cache (live)."""
    with stack.replica("edge-authz", "edge") as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz", timeout=2).json()["key_cache"] != "live":
            assert time.monotonic() < deadline, "the second edge's key cache never went live"
            time.sleep(0.1)
        yield url


@pytest.fixture(scope="module")
def edges(stack: Stack, second_edge: str) -> Iterator[dict[str, httpx.Client]]:
    with httpx.Client(base_url=stack.edge_url, timeout=30) as one, httpx.Client(base_url=second_edge,
                                                                                 timeout=30) as two:
        yield {"edge-1": one, "edge-2": two}


def warm(edges: dict[str, httpx.Client], key: str) -> None:
    """Each edge validates the key and caches it (the cache is live, so it really is cached)."""
    for name, edge in edges.items():
        assert edge.get("/readyz").json()["key_cache"] == "live", name
        for _ in range(2):
            assert edge.get("/api/my-stats", headers={"X-API-Key": key}).status_code == 200, name


def seconds_until_refused(edges: dict[str, httpx.Client], key: str, changed_at: float) -> dict[str, float]:
    """Poll every edge every ~50 ms; for each, when (after `changed_at`) the request that got 401 was sent.

    Stops polling an edge once refused, and gives up a little after the deadline."""
    refused: dict[str, float] = {}
    while len(refused) < len(edges) and time.monotonic() - changed_at < REFUSED_WITHIN_S + 2:
        for name, edge in edges.items():
            if name in refused:
                continue
            sent = time.monotonic() - changed_at
            status = edge.get("/api/my-stats", headers={"X-API-Key": key}).status_code
            assert status in (200, 401), status
            if status == 401:
                refused[name] = sent
        time.sleep(POLL_EVERY_S)
    return {name: refused.get(name, float("inf")) for name in edges}


def via_edge(client: httpx.Client, admin_headers: dict[str, str], action: str) -> Callable[[TestUser], str | None]:
    def run(user: TestUser) -> str | None:
        response = client.post(f"/api/admin/users/{user.username}/{action}", headers=admin_headers)
        assert response.status_code == 200, response.text
        return response.json().get("api_key")
    return run


def via_cli(stack: Stack, action: str) -> Callable[[TestUser], str | None]:
    """`fsg-auth`: another writer, straight to the database, so only auth's NOTIFY push can evict."""
    def run(user: TestUser) -> str | None:
        out = subprocess.run([sys.executable, "-m", "services.auth.cli", action, user.username], env=stack.env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return out.strip().rsplit(" ", 1)[-1] if action == "rotate-key" else None
    return run


@pytest.mark.parametrize("action", ["disable", "rotate-key"])
@pytest.mark.parametrize("writer", ["admin-endpoint-on-edge-1", "auth-cli"])
def test_a_revoked_key_is_refused_within_a_second_on_every_edge(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], users: UserFactory,
    edges: dict[str, httpx.Client], writer: str, action: str,
) -> None:
    user = users.create(credits=1)
    warm(edges, user.api_key)
    change = via_edge(client, admin_headers, action) if writer.startswith("admin") else via_cli(stack, action)
    new_key = change(user)
    changed_at = time.monotonic()

    refused = seconds_until_refused(edges, user.api_key, changed_at)
    assert all(s <= REFUSED_WITHIN_S for s in refused.values()), refused
    for name, edge in edges.items():  # and it stays refused; a new key works at once
        assert edge.get("/api/my-stats", params={"api_key": user.api_key}).status_code == 401, name
        if new_key is not None:
            assert edge.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 200, name
