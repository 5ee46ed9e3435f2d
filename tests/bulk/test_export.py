"""The exports, over REST and the CLI: the CSV parses, every user is there once, and each number equals what the
ledger and the usage log say, computed here with SQL (never with the code under test)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest

from common.bulk.export import USAGE_COLUMNS, USER_COLUMNS
from protos import billing_pb2, billing_pb2_grpc
from tests.bulk.support import Person, cli, csv_file, parse, people, post_import
from tests.reliability.support import STRUCTURE_BODY, assert_reconciled
from tests.stack import Stack, free_port

#: Money in an export: an exact decimal with 4 places.
MONEY = re.compile(r"-?[0-9]+\.[0-9]{4}")


def rows_of(text: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == columns
    return list(reader)


@pytest.fixture(scope="module")
def spenders(client: httpx.Client, admin_headers: dict[str, str]) -> dict[str, str]:
    """Two imported users (username → key) who made metered calls: two paid and one failed, and one paid."""
    crowd = people(2, prefix="spend", credits="500")
    report = parse(post_import(client, csv_file(crowd), admin_headers))
    keys = {r["username"]: r["api_key"] for r in report["rows"]}
    first, second = (keys[p.username] for p in crowd)
    calls = [(first, {}), (first, {}), (first, {"X-Sim-Fault": "server_error"}), (second, {})]
    statuses = [client.post("/api/generate-structure", json=STRUCTURE_BODY,
                            headers={"X-API-Key": key, **extra}).status_code for key, extra in calls]
    assert statuses == [200, 200, 502, 200], statuses
    return keys


async def ledger_says(db: asyncpg.Connection, username: str) -> dict[str, Any]:
    """One user's export row, derived from the ledger, the holds and the usage log."""
    row = await db.fetchrow(
        """SELECT a.id, a.email, a.is_admin, a.disabled_at IS NOT NULL AS disabled,
              (SELECT COALESCE(sum(credits_amount), 0) FROM credit_transactions WHERE user_id = a.id) AS available,
              (SELECT COALESCE(sum(h.amount), 0) FROM credit_holds h WHERE h.user_id = a.id AND NOT EXISTS (
                   SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)) AS held,
              (SELECT COALESCE(sum(credits_amount), 0) FROM credit_transactions
                WHERE user_id = a.id AND transaction_type IN ('grant', 'purchase')) AS total_purchased,
              (SELECT count(*) FROM usage_logs WHERE user_id = a.id) AS total_requests,
              (SELECT COALESCE(sum(input_tokens + output_tokens), 0) FROM usage_logs WHERE user_id = a.id)
                  AS total_tokens,
              (SELECT COALESCE(sum(credits_cost), 0) FROM usage_logs WHERE user_id = a.id) AS total_cost
           FROM user_accounts a WHERE a.username = $1""", username)
    return dict(row)


def assert_matches(exported: dict[str, str], expected: dict[str, Any]) -> None:
    for money in ("available", "held", "total_purchased", "total_cost"):
        assert MONEY.fullmatch(exported[money]), (money, exported[money])
        assert Decimal(exported[money]) == expected[money], (money, exported, expected)
    assert int(exported["total_requests"]) == expected["total_requests"]
    assert int(exported["total_tokens"]) == expected["total_tokens"]
    assert (exported["email"], exported["is_admin"], exported["disabled"]) == (
        expected["email"], "false", "true" if expected["disabled"] else "false")


async def test_users_csv_numbers_equal_the_ledger(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], spenders: dict[str, str],
    db: asyncpg.Connection, tmp_path: Path
) -> None:
    # A hold left pending while exporting, so `held` and `available` differ from what the calls settled.
    hold_id = str(uuid.uuid4())
    holder = await db.fetchval("SELECT id FROM user_accounts WHERE username = $1", list(spenders)[1])
    async with stack.channel("billing") as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        placed = await billing.Reserve(billing_pb2.ReserveRequest(hold_id=hold_id, user_id=holder, amount="7.5"))
        assert placed.ok
        try:
            response = client.get("/api/admin/export/users.csv", headers=admin_headers)
            pending = await ledger_says(db, list(spenders)[1])
        finally:
            await billing.Release(billing_pb2.ReleaseRequest(hold_id=hold_id, user_id=holder,
                                                             usage=billing_pb2.Usage(endpoint="test")))
    assert pending["held"] == Decimal("7.5")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="users.csv"'
    exported = rows_of(response.text, USER_COLUMNS)
    names = [r["username"] for r in exported]
    assert len(names) == len(set(names)) == await db.fetchval("SELECT count(*) FROM user_accounts")
    by_name = {r["username"]: r for r in exported}
    first, second = spenders
    assert (await ledger_says(db, first))["total_requests"] == 3
    assert_matches(by_name[first], await ledger_says(db, first))
    assert pending["total_requests"] == 1
    assert_matches(by_name[second], pending)
    admin = by_name["admin"]
    assert (admin["is_admin"], admin["available"]) == ("true", "")  # unlimited: no number, as in `users`

    written = tmp_path / "users.csv"
    result = cli(stack, "export", "users", "--output", str(written))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    from_cli = {r["username"]: r for r in rows_of(written.read_text(encoding="utf-8"), USER_COLUMNS)}
    assert from_cli[first] == by_name[first]
    assert_matches(from_cli[second], await ledger_says(db, second))  # the hold is released now
    assert not (tmp_path / "users.csv.partial").exists()


async def test_usage_csv_lists_the_range_exactly_as_the_usage_log(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], spenders: dict[str, str],
    db: asyncpg.Connection
) -> None:
    logged = await db.fetch(
        """SELECT l.id, a.username, l.user_id, l.endpoint, l.input_tokens, l.output_tokens, l.tokens_used,
                  l.credits_cost, l.provider_cost, l.response_success, l.created_at, l.request_id
           FROM usage_logs l JOIN user_accounts a ON a.id = l.user_id
           WHERE a.username = ANY($1::text[]) ORDER BY l.id""", list(spenders))
    successes = [r["response_success"] for r in logged]
    assert successes.count(True) == 3 and successes.count(False) >= 1  # the failed call (and a released hold)
    first, last = min(r["created_at"] for r in logged).date(), max(r["created_at"] for r in logged).date()

    response = client.get("/api/admin/export/usage.csv", params={"from": str(first), "to": str(last)},
                          headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="usage-{first}-to-{last}.csv"'
    exported = [r for r in rows_of(response.text, USAGE_COLUMNS) if r["username"] in spenders]
    assert [(int(r["id"]), r["username"], int(r["user_id"]), r["endpoint"], r["request_id"]) for r in exported] == [
        (r["id"], r["username"], r["user_id"], r["endpoint"], r["request_id"]) for r in logged]
    for row, log in zip(exported, logged, strict=True):
        assert MONEY.fullmatch(row["credits_cost"]) and MONEY.fullmatch(row["provider_cost"])
        assert (Decimal(row["credits_cost"]), Decimal(row["provider_cost"])) == (log["credits_cost"],
                                                                                 log["provider_cost"])
        assert (int(row["input_tokens"]), int(row["output_tokens"]), int(row["tokens_used"])) == (
            log["input_tokens"], log["output_tokens"], log["tokens_used"])
        assert row["success"] == ("true" if log["response_success"] else "false")
    assert sum(Decimal(r["credits_cost"]) for r in exported) == sum(r["credits_cost"] for r in logged)

    result = cli(stack, "export", "usage", "--from", str(first), "--to", str(last))
    assert result.returncode == 0, result.stderr
    assert [r for r in rows_of(result.stdout, USAGE_COLUMNS) if r["username"] in spenders] == exported

    before = str(first - timedelta(days=1))
    earlier = client.get("/api/admin/export/usage.csv", params={"from": before, "to": before}, headers=admin_headers)
    assert earlier.status_code == 200 and [r for r in rows_of(earlier.text, USAGE_COLUMNS)
                                           if r["username"] in spenders] == []
    assert_reconciled(stack)


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-02-30", "to": "2026-03-01"}, "from"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "yesterday", "to": "2026-03-01"}, "from"),
    ({"from": "2026-03-01"}, "to"),
    ({"from": "2026-03-01", "to": "9999-12-31"}, "to"),
])
def test_bad_dates_are_a_422_json_error(client: httpx.Client, admin_headers: dict[str, str],
                                        params: dict[str, str], field: str) -> None:
    response = client.get("/api/admin/export/usage.csv", params=params, headers=admin_headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "Invalid request" and [f["field"] for f in body["fields"]] == [field]


def test_the_cli_refuses_bad_dates_with_a_message(stack: Stack) -> None:
    result = cli(stack, "export", "usage", "--from", "2026-03-02", "--to", "2026-03-01")
    assert result.returncode == 2 and "must not be before from" in result.stderr and result.stdout == ""


def test_exports_need_an_admin_key(client: httpx.Client, spenders: dict[str, str]) -> None:
    key = next(iter(spenders.values()))
    for url in ("/api/admin/export/users.csv", "/api/admin/export/usage.csv?from=2026-01-01&to=2026-01-02"):
        assert client.get(url).status_code == 401
        refused = client.get(url, headers={"X-API-Key": key})
        assert refused.status_code == 403 and refused.json()["error"] == "Admin access required"


def test_a_text_cell_a_spreadsheet_would_run_as_a_formula_is_defused(
    client: httpx.Client, admin_headers: dict[str, str]
) -> None:
    tag = people(1)[0].username
    crowd = [Person(f"-{tag}", f"=HYPERLINK(1)+{tag}@example.test", "1")]
    report = parse(post_import(client, csv_file(crowd), admin_headers))
    assert [r["outcome"] for r in report["rows"]] == ["created"]
    exported = {r["username"]: r for r in rows_of(
        client.get("/api/admin/export/users.csv", headers=admin_headers).text, USER_COLUMNS)}
    row = exported[f"'-{tag}"]
    assert row["email"] == f"'=HYPERLINK(1)+{tag}@example.test" and row["available"] == "1.0000"


def test_a_service_that_is_down_is_a_clear_failure_of_the_cli_export(stack: Stack, tmp_path: Path) -> None:
    written = tmp_path / "users.csv"
    written.write_text("an older export\n")
    result = cli(stack, "export", "users", "--output", str(written),
                 env={"AUTH_ADDR": f"127.0.0.1:{free_port()}", "BULK_RPC_TIMEOUT_SECONDS": "5"})
    assert result.returncode == 1 and "export failed, nothing was written" in result.stderr
    assert "auth service failed (UNAVAILABLE)" in result.stderr
    assert written.read_text() == "an older export\n" and not (tmp_path / "users.csv.partial").exists()


async def test_list_usage_pages_through_the_range_by_id(stack: Stack, spenders: dict[str, str],
                                                        db: asyncpg.Connection) -> None:
    """Billing's ListUsage, one row a page: the pages join up to exactly the usage log of the range (the export
    reads 2,000 a page; the same keyset)."""
    first, last = await db.fetchrow(
        """SELECT min(l.id), max(l.id) FROM usage_logs l JOIN user_accounts a ON a.id = l.user_id
           WHERE a.username = ANY($1::text[])""", list(spenders))
    start, end = await db.fetchrow("SELECT min(created_at), max(created_at) FROM usage_logs WHERE id BETWEEN $1 AND $2",
                                   first, last)
    expected = [r["id"] for r in await db.fetch(
        "SELECT id FROM usage_logs WHERE created_at >= $1 AND created_at < $2 ORDER BY id", start,
        end + timedelta(microseconds=1))]
    async with stack.channel("billing") as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        seen: list[int] = []
        after = 0
        while True:
            page = await billing.ListUsage(billing_pb2.ListUsageRequest(
                start=start.isoformat(), end=(end + timedelta(microseconds=1)).isoformat(), after_id=after,
                page_size=1))
            seen += [r.id for r in page.rows]
            assert len(page.rows) <= 1
            if not page.next_after_id:
                break
            after = page.next_after_id
        assert seen == expected and {first, last} <= set(seen)
        for bad in (billing_pb2.ListUsageRequest(start="yesterday", end=end.isoformat()),
                    billing_pb2.ListUsageRequest(start="2026-01-01T00:00:00", end=end.isoformat()),
                    billing_pb2.ListUsageRequest(start=start.isoformat(), end=end.isoformat(), page_size=5001)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await billing.ListUsage(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
