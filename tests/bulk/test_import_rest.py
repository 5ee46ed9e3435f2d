"""POST /api/admin/import through the real edge: the report as JSON, the dry run, idempotency, and every bad
input answered with a clear 4xx JSON error that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import httpx

from tests.bulk.support import HEADER, accounts, csv_file, grants, parse, people, post_import, whole_books
from tests.helpers import UserFactory, key_leaks
from tests.reliability.support import assert_reconciled
from tests.stack import Stack

#: The edge's default EDGE_MAX_IMPORT_BYTES.
IMPORT_LIMIT = 10 * 1024 * 1024


async def test_import_over_rest_reports_each_row_and_a_second_post_changes_nothing(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    crowd = [*people(2, prefix="rest", credits="25.5"), *people(1, prefix="rest0", credits="0")]
    names = [p.username for p in crowd]
    data = csv_file(crowd)
    before = await whole_books(db)

    dry = post_import(client, data, admin_headers, dry_run="true")
    assert dry.status_code == 200, dry.text
    preview = parse(dry)
    assert preview["dry_run"] and [r["outcome"] for r in preview["rows"]] == ["created"] * 3
    assert preview["summary"] == {"rows": 3, "created": 3, "exists": 0, "rejected": 0, "not_processed": 0,
                                  "credits_granted": Decimal(51)}
    assert await whole_books(db) == before

    done = post_import(client, data, admin_headers)
    assert done.status_code == 200, done.text
    report = parse(done)
    assert report["complete"] and not report["dry_run"]
    assert [(r["row"], r["username"], r["outcome"], r["credits_granted"]) for r in report["rows"]] == [
        (i + 2, p.username, "created", Decimal(p.credits)) for i, p in enumerate(crowd)]
    stored = await accounts(db, names)
    for row in report["rows"]:
        mine = client.get("/api/my-stats", headers={"X-API-Key": row["api_key"]})
        assert mine.status_code == 200 and mine.json()["user"]["username"] == row["username"]
    ledger = await grants(db, names)
    assert ledger == [(p.username, Decimal("25.5"), "grant", f"create-user:{stored[p.username.lower()]['id']}:initial")
                      for p in crowd[:2]]
    created_by = await db.fetch("SELECT DISTINCT created_by FROM credit_transactions WHERE idempotency_key = ANY($1)",
                                [g[3] for g in ledger])
    assert [r["created_by"] for r in created_by] == ["admin"]

    again = parse(post_import(client, data, admin_headers))
    assert [(r["outcome"], r["credits_granted"]) for r in again["rows"]] == [("exists", 0)] * 3
    assert await grants(db, names) == ledger and await accounts(db, names) == stored
    for row in report["rows"]:
        for process in ("edge", "auth", "billing"):
            assert key_leaks(row["api_key"], stack.log(process)) == [], process
    assert_reconciled(stack)


def _refused(response: httpx.Response, status: int, error: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    assert body["error"] == error and isinstance(body.get("message"), str), body
    return body


async def test_every_bad_upload_is_a_clear_4xx_and_changes_nothing(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory, db: asyncpg.Connection
) -> None:
    good = people(1, prefix="restbad", credits="5")[0]
    line = f"{good.username},{good.email},5,\r\n"
    user = users.create(credits=0)
    before = await whole_books(db)

    malformed = _refused(post_import(client, b"user,mail\r\n" + line.encode(), admin_headers), 400, "Malformed CSV")
    assert "first row must be the header username,email,initial_credits,notes" in str(malformed["message"])
    columns = _refused(post_import(client, f"{HEADER}\r\n{line}a_bcd,a@b.cc\r\n".encode(), admin_headers), 400,
                       "Malformed CSV")
    assert columns["problems"] == [{"row": 3, "field": "", "message": "has 2 columns, not 4"}]
    _refused(post_import(client, f"{HEADER}\r\n{line}".encode() + b"\xff\r\n", admin_headers), 400, "Malformed CSV")
    twice = _refused(post_import(client, f"{HEADER}\r\n{line}{line.upper()}".encode(), admin_headers), 422,
                     "Invalid rows")
    assert twice["problems"] == [
        {"row": 3, "field": "username", "message": "duplicate of row 2: each user must appear once"},
        {"row": 3, "field": "email", "message": "duplicate of row 2: each user must appear once"}]
    negative = _refused(post_import(client, f"{HEADER}\r\n{line}x_neg,x@neg.cc,-1,\r\n".encode(), admin_headers,
                                    dry_run="true"), 422, "Invalid rows")
    assert negative["problems"] == [{"row": 3, "field": "initial_credits", "message": "must not be negative"}]
    assert "Nothing was imported" in str(negative["message"])
    as_json = client.post("/api/admin/import", json={"username": good.username}, headers=admin_headers)
    assert "text/csv" in str(_refused(as_json, 415, "Unsupported media type")["message"])
    _refused(post_import(client, f"{HEADER}\r\n{line}".encode(), user.headers), 403, "Admin access required")
    _refused(post_import(client, f"{HEADER}\r\n{line}".encode(), {}), 401, "API key required")
    _refused(post_import(client, f"{HEADER}\r\n{line}".encode(), admin_headers, dry_run="maybe"), 422,
             "Invalid request")
    assert await whole_books(db) == before and await accounts(db, [good.username]) == {}


async def test_an_oversized_upload_is_413_before_it_is_read_and_changes_nothing(
    client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    good = people(1, prefix="big", credits="5")[0]
    head = f"{HEADER}\r\n{good.username},{good.email},5,".encode()
    before = await whole_books(db)
    declared = post_import(client, head + b"x" * (IMPORT_LIMIT - len(head) + 1), admin_headers)
    body = _refused(declared, 413, "Request body too large")
    assert str(IMPORT_LIMIT) in str(body["message"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives, stopped at the limit
        yield head
        for _ in range(IMPORT_LIMIT // 65536 + 1):
            yield b"x" * 65536

    chunked = client.post("/api/admin/import", content=chunks(), headers={**admin_headers,
                                                                          "Content-Type": "text/csv"})
    _refused(chunked, 413, "Request body too large")
    assert await whole_books(db) == before and await accounts(db, [good.username]) == {}


async def test_the_import_limit_is_its_own_and_other_bodies_keep_theirs(
    client: httpx.Client, admin_headers: dict[str, str]
) -> None:
    """A CSV above the 1 MiB body limit of other routes is read (here: refused as CSV, not as too large), and
    the import's larger limit does not reach any other route."""
    big = f"{HEADER}\r\n".encode() + b"y" * (2 * 1024 * 1024)
    _refused(post_import(client, big, admin_headers), 400, "Malformed CSV")
    other = client.post("/api/admin/create-user", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                        headers={**admin_headers, "Content-Type": "application/json"})
    _refused(other, 413, "Request body too large")


async def test_billing_lost_mid_import_is_a_503_with_the_report_and_the_rerun_finishes(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    """An edge whose billing dies (after the edge came up) creates the users, cannot grant: 503 with the report
    (keys included, credits marked NOT granted); the same file through a healthy edge grants each once. Its
    exports answer a 503 JSON instead of a broken download."""
    crowd = people(3, prefix="cut", credits="9")
    names = [p.username for p in crowd]
    with stack.replica("billing-bulk", "billing") as billing_addr, \
            stack.replica("edge-bulk", "edge", {"BILLING_ADDR": billing_addr,
                                                "EDGE_BULK_RPC_TIMEOUT_SECONDS": "5"}) as edge_url:
        stack.kill("billing-bulk")
        with httpx.Client(base_url=edge_url, timeout=60) as cut_off:
            response = post_import(cut_off, csv_file(crowd), admin_headers)
            exported = cut_off.get("/api/admin/export/users.csv", headers=admin_headers)
    body = _refused(response, 503, "Import incomplete")
    assert body["complete"] is False and "billing service failed" in str(body["failure"])
    rows = body["rows"]
    assert isinstance(rows, list) and [r["outcome"] for r in rows] == ["created"] * 3
    assert all("NOT granted" in r["reason"] and r["api_key"].startswith("user_") for r in rows)
    assert len(await accounts(db, names)) == 3 and await grants(db, names) == []
    _refused(exported, 503, "Service unavailable")

    rerun = parse(post_import(client, csv_file(crowd), admin_headers))
    assert [(r["outcome"], r["credits_granted"]) for r in rerun["rows"]] == [("exists", Decimal(9))] * 3
    assert [g[1] for g in await grants(db, names)] == [Decimal(9)] * 3
    assert_reconciled(stack)
