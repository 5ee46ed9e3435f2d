"""The guide's examples, word for word, through the real processes: its curl calls (as HTTP requests with
the same headers and bodies), its documented answers, and its three SQL queries run unchanged in psql."""

from __future__ import annotations

import subprocess
import uuid
from decimal import Decimal

import httpx

from devstack.embedded_pg import tool_path
from tests.stack import Stack


def test_initial_setup_admin_key_has_the_documented_shape(stack: Stack) -> None:
    assert stack.admin_key.startswith("admin_") and len(stack.admin_key) == len("admin_") + 64


def test_managing_users_and_credits_as_in_the_guide(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    name = f"johndoe_{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/api/admin/create-user",
        headers={**admin_headers, "Content-Type": "application/json"},
        content=f'{{"username": "{name}", "email": "{name}@example.com", "initialCredits": 100}}',
    )
    assert created.status_code == 201
    body = created.json()
    assert body["message"] == "User created successfully"
    user = body["user"]
    assert set(user) == {"id", "username", "email", "api_key", "credits_remaining"}
    assert user["username"] == name and user["credits_remaining"] == 100 and isinstance(user["id"], int)
    assert user["api_key"].startswith("user_") and len(user["api_key"]) == 69

    granted = client.post(
        "/api/admin/grant-credits",
        headers=admin_headers,
        json={"username": name, "credits": 50, "notes": "Bonus credits for beta testing"},
    )
    assert granted.status_code == 200, granted.text

    stats = client.get(f"/api/admin/usage-stats/{name}", headers=admin_headers)
    assert stats.status_code == 200
    doc = stats.json()
    assert doc["user"]["username"] == name
    assert doc["user"]["credits_remaining"] == 150
    assert doc["user"]["total_credits_purchased"] == 150
    assert set(doc["usage"]) == {"total_requests", "total_tokens", "total_cost", "successful_requests",
                                 "avg_tokens_per_request"}
    assert all(isinstance(v, int | float) for v in doc["usage"].values())
    assert doc["recentUsage"] == []
    # Numbers are JSON numbers, not strings, in the raw text too.
    assert '"credits_remaining":150' in stats.text

    me = client.get("/api/my-stats", headers={"X-API-Key": user["api_key"]})
    assert me.status_code == 200 and me.json()["user"]["credits_remaining"] == 150
    by_query = client.get("/api/my-stats", params={"api_key": user["api_key"]})
    assert by_query.status_code == 200 and by_query.json() == me.json()


def test_guide_error_bodies(client: httpx.Client) -> None:
    missing = client.get("/api/my-stats")
    assert missing.status_code == 401
    assert missing.json() == {"error": "API key required",
                              "message": "Please provide an API key in the X-API-Key header"}
    invalid = client.get("/api/my-stats", headers={"X-API-Key": "user_" + "0" * 64})
    assert invalid.status_code == 401 and invalid.json() == {"error": "Invalid API key"}


def test_guide_sql_examples_run_unchanged(stack: Stack, client: httpx.Client, admin_headers: dict[str, str]) -> None:
    queries = [
        "SELECT username, credits_remaining, created_at FROM users;",
        """SELECT u.username, ul.endpoint, ul.credits_cost, ul.created_at 
FROM usage_logs ul 
JOIN users u ON ul.user_id = u.id 
ORDER BY ul.created_at DESC 
LIMIT 50;""",
        """SELECT u.username, SUM(ul.credits_cost) as total_spent
FROM usage_logs ul 
JOIN users u ON ul.user_id = u.id 
GROUP BY u.username 
ORDER BY total_spent DESC;""",
    ]
    for sql in queries:
        result = subprocess.run([tool_path("psql"), stack.dsn, "-v", "ON_ERROR_STOP=1", "-c", sql],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    first = subprocess.run([tool_path("psql"), stack.dsn, "-tA", "-c", queries[0]],
                           capture_output=True, text=True, timeout=30)
    assert "admin|" in first.stdout  # the admin's credits_remaining is NULL: unlimited is not a number


def test_pg_dump_backup_as_in_the_guide(stack: Stack) -> None:
    result = subprocess.run([tool_path("pg_dump"), stack.dsn], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE public.credit_transactions" in result.stdout
    assert "CREATE VIEW public.users" in result.stdout


def test_total_credits_purchased_counts_initial_and_granted(users, client, admin_headers) -> None:  # type: ignore[no-untyped-def]
    user = users.create(credits=100)
    client.post("/api/admin/grant-credits", headers=admin_headers, json={"username": user.username, "credits": 50})
    stats = users.stats(user)["user"]
    assert Decimal(str(stats["total_credits_purchased"])) == 150
