"""Shared pieces of the bulk tests: files of fresh users, the CLI as an operator runs it, and what the database
says about those users (read with SQL, never through the code under test)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from common.settings import REPO_ROOT
from tests.stack import Stack

HEADER = "username,email,initial_credits,notes"


@dataclass(frozen=True)
class Person:
    username: str
    email: str
    credits: str = "0"
    notes: str = ""


def people(count: int, prefix: str = "bulk", credits: str = "100") -> list[Person]:
    """Users no test has used (unique names), each with `credits` initial credits."""
    tag = uuid.uuid4().hex[:8]
    return [Person(f"{prefix}_{tag}_{i}", f"{prefix}_{tag}_{i}@example.test", credits) for i in range(count)]


def csv_file(rows: list[Person], header: str = HEADER) -> bytes:
    """An import file as a spreadsheet would save it (quoted where needed, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(header + "\r\n")
    writer.writerows([p.username, p.email, p.credits, p.notes] for p in rows)
    return buffer.getvalue().encode()


def cli(stack: Stack, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`fsg-billing` as an operator runs it, with the stack's service addresses and token. Its DATABASE_URL
    points nowhere: the bulk commands must work through the services alone."""
    environment = {**stack.env, "DATABASE_URL": "postgresql://nobody:none@127.0.0.1:1/none", **(env or {})}
    return subprocess.run([sys.executable, "-m", "services.billing.cli", *args], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


def report_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report `fsg-billing import --json` printed, numbers as exact Decimals."""
    parsed: dict[str, Any] = json.loads(result.stdout, parse_float=Decimal)
    return parsed


def post_import(client: httpx.Client, data: bytes, headers: dict[str, str], **params: str) -> httpx.Response:
    return client.post("/api/admin/import", content=data, params=params,
                       headers={**headers, "Content-Type": "text/csv"})


def parse(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


async def accounts(db: asyncpg.Connection, names: list[str]) -> dict[str, asyncpg.Record]:
    """The user_accounts rows with these usernames, by lower-cased name."""
    rows = await db.fetch("SELECT * FROM user_accounts WHERE lower(username) = ANY($1::text[])",
                          [n.lower() for n in names])
    return {r["username"].lower(): r for r in rows}


async def grants(db: asyncpg.Connection, names: list[str]) -> list[tuple[str, Decimal, str, str]]:
    """Every ledger row of these users: (username, amount, type, idempotency key), in ledger order."""
    rows = await db.fetch(
        """SELECT a.username, t.credits_amount, t.transaction_type, t.idempotency_key
           FROM credit_transactions t JOIN user_accounts a ON a.id = t.user_id
           WHERE lower(a.username) = ANY($1::text[]) ORDER BY t.id""", [n.lower() for n in names])
    return [(r["username"], r["credits_amount"], r["transaction_type"], r["idempotency_key"]) for r in rows]


async def whole_books(db: asyncpg.Connection) -> tuple[Any, ...]:
    """What any import could change, over the whole database: users (count, highest id), accounts, and the
    ledger's credit rows (count, highest id, sum). A refused or dry-run import must leave all of it as it was.
    (Holds and their releases are left out: the sweeper may expire another test's hold at any moment.)"""
    row = await db.fetchrow(
        """SELECT (SELECT count(*) FROM user_accounts) AS users, (SELECT max(id) FROM user_accounts) AS max_user,
                  (SELECT count(*) FROM credit_accounts) AS accounts, credits.*
           FROM (SELECT count(*) AS rows, max(id) AS max_id, sum(credits_amount) AS credited
                 FROM credit_transactions
                 WHERE transaction_type IN ('grant', 'purchase', 'refund', 'adjustment')) AS credits""")
    return tuple(row.values())
