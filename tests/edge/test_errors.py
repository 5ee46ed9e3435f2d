"""Every admin and self-service error path, through the edge; and that a rejected request changes nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from decimal import Decimal

import httpx
import pytest

from tests.helpers import UserFactory, metric
from tests.stack import Stack


def _name() -> str:
    return f"u_{uuid.uuid4().hex[:10]}"


ADMIN_ROUTES = [
    ("POST", "/api/admin/create-user", {"username": "abcdef", "email": "a@example.com"}),
    ("POST", "/api/admin/grant-credits", {"username": "abcdef", "credits": 1}),
    ("GET", "/api/admin/usage-stats/abcdef", None),
    ("GET", "/api/admin/users", None),
    ("POST", "/api/admin/users/abcdef/rotate-key", None),
    ("POST", "/api/admin/users/abcdef/disable", None),
    ("POST", "/api/admin/users/abcdef/enable", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_need_a_key_and_an_admin(
    client: httpx.Client, users: UserFactory, method: str, path: str, body: dict[str, object] | None
) -> None:
    assert client.request(method, path, json=body).status_code == 401
    user = users.create(credits=0)
    forbidden = client.request(method, path, json=body, headers=user.headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "Admin access required"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com"}, "username"),
        ({"username": "ok_name"}, "email"),
        ({"username": 12345, "email": "x@example.com"}, "username"),
        ({"username": "a", "email": "x@example.com"}, "username"),
        ({"username": "bad name!", "email": "x@example.com"}, "username"),
        ({"username": "ok_name", "email": "not-an-email"}, "email"),
        ({"username": "ok_name", "email": "x@example.com", "initialCredits": -1}, "initialCredits"),
        ({"username": "ok_name", "email": "x@example.com", "initialCredits": "100"}, "initialCredits"),
        ({"username": "ok_name", "email": "x@example.com", "initialCredits": True}, "initialCredits"),
        ({"username": "ok_name", "email": "x@example.com", "initialCredits": 1e12}, "initialCredits"),
        ({"username": "ok_name", "email": "x@example.com", "initialCredits": 0.00001}, "initialCredits"),
        ({"username": "ok_name", "email": "x@example.com", "extra": 1}, "extra"),
    ],
)
def test_create_user_rejects_invalid_bodies(
    client: httpx.Client, admin_headers: dict[str, str], body: dict[str, object], field: str
) -> None:
    before = client.get("/api/admin/users", params={"limit": 500}, headers=admin_headers).json()
    response = client.post("/api/admin/create-user", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert field in {f["field"] for f in response.json()["fields"]}
    after = client.get("/api/admin/users", params={"limit": 500}, headers=admin_headers).json()
    assert len(after["users"]) == len(before["users"])


def test_malformed_json_is_400(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    response = client.post("/api/admin/create-user", content='{"username": "x",',
                           headers={**admin_headers, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "Invalid JSON"


def test_duplicate_username_or_email_is_409(client: httpx.Client, admin_headers: dict[str, str],
                                            users: UserFactory) -> None:
    user = users.create(credits=5)
    same_name = client.post("/api/admin/create-user", headers=admin_headers,
                            json={"username": user.username.upper(), "email": f"{_name()}@example.com"})
    assert same_name.status_code == 409 and same_name.json() == {"error": "Username already exists"}
    same_email = client.post("/api/admin/create-user", headers=admin_headers,
                             json={"username": _name(), "email": user.email.upper(), "initialCredits": 10})
    assert same_email.status_code == 409 and same_email.json() == {"error": "Email already exists"}
    assert users.balance(user) == 5


@pytest.mark.parametrize("credits", [0, -5, "5", None, 1e9, 0.00001, True])
def test_grant_rejects_bad_credits_and_changes_nothing(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory, credits: object
) -> None:
    user = users.create(credits=10)
    response = client.post("/api/admin/grant-credits", headers=admin_headers,
                           json={"username": user.username, "credits": credits})
    assert response.status_code == 422, response.text
    assert "credits" in {f["field"] for f in response.json()["fields"]}
    assert users.balance(user) == 10


def test_unknown_username_is_404(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    name = _name()
    grant = client.post("/api/admin/grant-credits", headers=admin_headers, json={"username": name, "credits": 1})
    assert grant.status_code == 404 and grant.json() == {"error": "User not found"}
    assert client.get(f"/api/admin/usage-stats/{name}", headers=admin_headers).status_code == 404
    assert client.post(f"/api/admin/users/{name}/disable", headers=admin_headers).status_code == 404


def test_grants_are_whole_credits_read_exactly(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory
) -> None:
    """1 credit = 1 cent: grants are whole; a whole number written as 10.0 or 1e1 is read exactly."""
    user = users.create(credits=0)
    headers = {**admin_headers, "Content-Type": "application/json"}
    for text in ("0.1", "10.0000000000000001"):
        response = client.post("/api/admin/grant-credits", headers=headers,
                               content=f'{{"username": "{user.username}", "credits": {text}}}')
        assert response.status_code == 422, response.text
    for text in ("10.0", "1e1"):
        response = client.post("/api/admin/grant-credits", headers=headers,
                               content=f'{{"username": "{user.username}", "credits": {text}}}')
        assert response.status_code == 200, response.text
        assert '"credits_granted":10,' in response.text
    assert users.balance(user) == Decimal(20)


def test_grant_idempotency_key_header_makes_retries_safe(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory
) -> None:
    user = users.create(credits=1)
    headers = {**admin_headers, "Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/api/admin/grant-credits", headers=headers, json={"username": user.username, "credits": 5})
    second = client.post("/api/admin/grant-credits", headers=headers, json={"username": user.username, "credits": 5})
    assert first.status_code == second.status_code == 200
    assert second.json()["replayed"] is True and second.json()["transaction_id"] == first.json()["transaction_id"]
    assert users.balance(user) == 6


def test_rotate_and_disable_take_effect_at_once(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory
) -> None:
    user = users.create(credits=3)
    rotated = client.post(f"/api/admin/users/{user.username}/rotate-key", headers=admin_headers)
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    assert client.get("/api/my-stats", headers=user.headers).status_code == 401
    assert client.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 200
    assert client.post(f"/api/admin/users/{user.username}/disable", headers=admin_headers).status_code == 200
    disabled = client.get("/api/my-stats", headers={"X-API-Key": new_key})
    assert disabled.status_code == 401 and disabled.json() == {"error": "Invalid API key"}
    assert client.post(f"/api/admin/users/{user.username}/enable", headers=admin_headers).status_code == 200
    assert client.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 200


def test_admin_user_listing_paginates_with_balances(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory
) -> None:
    created = [users.create(credits=7) for _ in range(3)]
    seen: dict[str, dict[str, object]] = {}
    after = 0
    while True:
        page = client.get("/api/admin/users", params={"limit": 2, "after": after}, headers=admin_headers).json()
        seen.update({u["username"]: u for u in page["users"]})
        if page["next_after"] is None:
            break
        after = page["next_after"]
    for user in created:
        assert seen[user.username]["credits_remaining"] == 7
        assert seen[user.username]["total_requests"] == 0
    assert seen["admin"]["unlimited"] is True and seen["admin"]["credits_remaining"] is None
    bad = client.get("/api/admin/users", params={"limit": 0}, headers=admin_headers)
    assert bad.status_code == 422


def test_my_transactions_lists_own_ledger(client: httpx.Client, admin_headers: dict[str, str],
                                          users: UserFactory) -> None:
    user = users.create(credits=20)
    client.post("/api/admin/grant-credits", headers=admin_headers,
                json={"username": user.username, "credits": 2, "notes": "thanks"})
    rows = client.get("/api/my-transactions", headers=user.headers).json()["transactions"]
    assert [(r["transaction_type"], r["credits_amount"], r["balance_after"]) for r in rows] == [
        ("grant", 2, 22), ("grant", 20, 20)]
    assert rows[0]["notes"] == "thanks"
    assert client.get("/api/my-transactions").status_code == 401


def test_health_endpoints(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["services"] == {"auth": "SERVING", "billing": "SERVING", "generation": "SERVING"}


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    response = client.get("/api/nope")
    assert response.status_code == 404 and response.json() == {"error": "Not found"}


def test_cli_rotation_and_disable_reach_a_cached_edge_at_once(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], users: UserFactory
) -> None:
    assert client.get("/readyz").json()["key_cache"] == "live"
    user = users.create(credits=3)
    assert client.get("/api/my-stats", headers=user.headers).status_code == 200  # now cached
    env = {**stack.env}
    out = subprocess.run([sys.executable, "-m", "services.auth.cli", "rotate-key", user.username], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    new_key = out.strip().rsplit(" ", 1)[-1]
    # The CLI wrote straight to the database; auth's NOTIFY listener pushes the revocation to the edge.
    assert client.get("/api/my-stats", headers=user.headers).status_code == 401
    assert client.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 200
    subprocess.run([sys.executable, "-m", "services.auth.cli", "disable", user.username], env=env,
                   capture_output=True, text=True, timeout=60, check=True)
    assert client.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 401


def test_metrics_count_calls_and_rejections(client: httpx.Client, users: UserFactory) -> None:
    ok = {"endpoint": "/api/generate-structure", "outcome": "ok"}
    rejected_before = metric(client, "fsg_auth_failures_total", reason="invalid")
    ok_before = metric(client, "fsg_generation_requests_total", **ok)
    client.get("/api/my-stats", headers={"X-API-Key": "user_" + "1" * 64})
    user = users.create(credits=50)
    response = client.post("/api/generate-structure", headers=user.headers,
                           json={"storyInput": {"title": "Metrics"}, "template": "three-act"})
    assert response.status_code == 200
    assert metric(client, "fsg_auth_failures_total", reason="invalid") == rejected_before + 1
    assert metric(client, "fsg_generation_requests_total", **ok) == ok_before + 1
