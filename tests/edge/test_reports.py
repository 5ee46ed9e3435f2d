"""The dashboards' REST reads and the quote: usage per day, by endpoint and by model; recent calls (keyset
pages, failed only); the system report's top users; a user search on /api/admin/users; and
/api/quote/generate-*, which prices a call as its route would hold it without holding anything. Expected
numbers come from the usage log and the ledger, read directly from the database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from edge.routes.reports import TOP_USERS
from tests.helpers import TestUser, UserFactory

STRUCTURE = {"storyInput": {"title": "Report", "logline": "Numbers for the dashboard"}, "template": "three-act"}


def _calls(client: httpx.Client, user: TestUser) -> tuple[str, str]:
    ok = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
    assert ok.status_code == 200, ok.text
    failed = client.post("/api/generate-structure", json=STRUCTURE,
                         headers={**user.headers, "X-Sim-Fault": "bad_schema"})
    assert failed.status_code >= 500, failed.text
    return ok.headers["X-Request-ID"], failed.headers["X-Request-ID"]


async def test_my_usage_report_matches_the_usage_log(client: httpx.Client, users: UserFactory,
                                                     db: asyncpg.Connection) -> None:
    user = users.create(credits=100)
    _calls(client, user)
    report = client.get("/api/my-usage-report", params={"days": 7}, headers=user.headers).json()
    assert [d["name"] for d in report["perDay"]][-1] == datetime.now(UTC).date().isoformat()
    assert len(report["perDay"]) == 7
    rows = await db.fetch("SELECT endpoint, model_used, tokens_used, credits_cost, response_success FROM usage_logs "
                          "WHERE user_id = $1", user.id)
    today = report["perDay"][-1]
    assert today["requests"] == len(rows) == 2
    assert today["failed"] == sum(not r["response_success"] for r in rows) == 1
    assert today["tokens"] == sum(r["tokens_used"] for r in rows)
    assert Decimal(str(today["credits"])) == sum(r["credits_cost"] for r in rows)
    assert all(d["requests"] == 0 for d in report["perDay"][:-1])
    [endpoint] = report["byEndpoint"]
    assert endpoint["name"] == rows[0]["endpoint"] and endpoint["requests"] == 2
    models = {m["name"]: m for m in report["byModel"]}
    assert sum(m["requests"] for m in models.values()) == 2
    # The day's credits are the ledger's: what was charged, and nothing for the failed call.
    charged = await db.fetchval("SELECT -sum(credits_amount) FROM credit_transactions WHERE user_id = $1 AND "
                                "transaction_type = 'usage'", user.id)
    assert Decimal(str(today["credits"])) == charged


def test_my_calls_pages_newest_first(client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=100)
    ok_id, failed_id = _calls(client, user)
    first = client.get("/api/my-calls", params={"limit": 1}, headers=user.headers).json()
    assert [c["requestId"] for c in first["calls"]] == [failed_id]
    assert first["calls"][0]["success"] is False and first["calls"][0]["error_message"]
    second = client.get("/api/my-calls", params={"limit": 1, "before": first["next_before"]},
                        headers=user.headers).json()
    assert [c["requestId"] for c in second["calls"]] == [ok_id]
    assert second["calls"][0]["credits_cost"] > 0 and second["calls"][0]["input_tokens"] > 0
    failed = client.get("/api/my-calls", params={"failed": "true"}, headers=user.headers).json()
    assert [c["requestId"] for c in failed["calls"]] == [failed_id]
    # Another user sees none of them.
    other = users.create(credits=0)
    assert client.get("/api/my-calls", headers=other.headers).json()["calls"] == []


def test_the_system_report_and_failed_calls(client: httpx.Client, users: UserFactory,
                                            admin_headers: dict[str, str]) -> None:
    user = users.create(credits=100)
    _, failed_id = _calls(client, user)
    report = client.get("/api/admin/usage-report", headers=admin_headers).json()
    credits = [Decimal(str(u["credits"])) for u in report["topUsers"]]
    assert credits == sorted(credits, reverse=True) and 0 < len(credits) <= TOP_USERS
    # The user is among the top spenders, or every one named spent at least as much (the stack is shared with
    # the rest of the suite, whose users may have spent more).
    own = client.get(f"/api/admin/users/{user.username}/usage-report", headers=admin_headers).json()
    spent = sum((Decimal(str(d["credits"])) for d in own["perDay"]), Decimal(0))
    assert spent > 0
    named = [u for u in report["topUsers"] if u["username"] == user.username]
    if named:
        assert Decimal(str(named[0]["credits"])) == spent
    else:
        assert len(credits) == TOP_USERS and min(credits) >= spent, (credits, spent)
    failed = client.get("/api/admin/calls", params={"failed": "true"}, headers=admin_headers).json()["calls"]
    assert failed_id in [c["requestId"] for c in failed]
    assert all(not c["success"] for c in failed)
    # The same reads for one user, and none of it for a user's key.
    mine = client.get(f"/api/admin/users/{user.username}/calls", headers=admin_headers).json()["calls"]
    assert {c["userId"] for c in mine} == {user.id}
    for path in ("/api/admin/usage-report", "/api/admin/calls", f"/api/admin/users/{user.username}/calls",
                 f"/api/admin/users/{user.username}/usage-report", f"/api/admin/users/{user.username}/transactions"):
        assert client.get(path, headers=user.headers).status_code == 403, path


def test_reports_refuse_bad_input(client: httpx.Client, users: UserFactory, admin_headers: dict[str, str]) -> None:
    user = users.create(credits=0)
    for path, params in (("/api/my-usage-report", {"days": 0}), ("/api/my-usage-report", {"days": 367}),
                         ("/api/my-calls", {"limit": 201}), ("/api/my-calls", {"before": -1})):
        response = client.get(path, params=params, headers=user.headers)
        assert response.status_code == 422 and response.json()["error"] == "Invalid request", (path, params)
    assert client.get("/api/admin/users", params={"search": "x" * 255}, headers=admin_headers).status_code == 422


def test_admin_user_search(client: httpx.Client, users: UserFactory, admin_headers: dict[str, str]) -> None:
    a = users.create(credits=0, prefix="srch_a")
    b = users.create(credits=0, prefix="srch_a")
    users.create(credits=0, prefix="srch_b")

    def page(**params: Any) -> dict[str, Any]:
        response = client.get("/api/admin/users", params=params, headers=admin_headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    found = page(search="SRCH_A", limit=1)
    assert [u["username"] for u in found["users"]] == [a.username]
    rest = page(search="srch_a", limit=1, after=found["next_after"])
    assert [u["username"] for u in rest["users"]] == [b.username]
    assert [u["username"] for u in page(search=b.email[:20])["users"]] == [b.username]
    # LIKE's wildcards are text here: "%" and "_" match only themselves.
    assert page(search="%")["users"] == []
    assert page(search="srch" + "_" * 3)["users"] == []


async def test_a_quote_holds_nothing(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    user = users.create(credits=50)
    quote = client.post("/api/quote/generate-structure", json=STRUCTURE, headers=user.headers)
    assert quote.status_code == 200, quote.text
    body = quote.json()
    assert body["minimum"] == 10 and Decimal(str(body["hold"])) == max(Decimal(10), Decimal(str(body["worstCase"])))
    assert body["credits_remaining"] == 50
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user.id) == 0
    assert await db.fetchval("SELECT count(*) FROM usage_logs WHERE user_id = $1", user.id) == 0
    # The hold the call then places is the quoted one.
    ran = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
    assert ran.status_code == 200
    held = await db.fetchval("SELECT amount FROM credit_holds WHERE user_id = $1", user.id)
    assert held == Decimal(str(body["hold"]))
    # A quote for a project that is not the caller's is the route's own 404; bad input its 422.
    other = users.create(credits=50)
    path = ran.json()["projectPath"]
    assert client.post(f"/api/quote/generate-plot-points-for-act/{path}/act1",
                       headers=other.headers).status_code == 404
    assert client.post("/api/quote/generate-structure", json={"template": "three-act"},
                       headers=user.headers).status_code == 422
