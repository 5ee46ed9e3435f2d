"""Shared pieces of the reliability tests: a stack of their own (so killing processes never disturbs the
session stack), users on it, and the books-balance checks every crash, race and outage must pass."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from common.settings import REPO_ROOT
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

STRUCTURE_BODY: dict[str, object] = {"storyInput": {"title": "Replica Run"}, "template": "three-act"}


def parse(response: httpx.Response) -> Any:
    """JSON with every non-integer number as an exact Decimal."""
    return json.loads(response.text, parse_float=Decimal)


@contextmanager
def own_stack(tmp_path_factory: pytest.TempPathFactory, name: str, settings: dict[str, str]) -> Iterator[Stack]:
    """A whole stack for one test module, stopped (every process, replicas too) when the module ends.

    Rate limits are off by default here: these tests load one user far past any sane limit on purpose, to
    show that the holds alone never overdraw (tests/edge/test_rate_limits.py covers the limits)."""
    limits_off = {"BILLING_DEFAULT_REQUESTS_PER_MINUTE": "0", "BILLING_DEFAULT_MAX_CONCURRENT": "0"}
    stack = Stack(tmp_path_factory.mktemp(name), settings={**limits_off, **settings})
    try:
        yield stack.start()
    finally:
        stack.stop()


def user_factory(stack: Stack, client: httpx.Client) -> UserFactory:
    return UserFactory(client, {"X-API-Key": stack.admin_key})


def stack_fixtures(stack_fixture: str) -> tuple[Any, Any, Any]:
    """The `client`, `users` and `db` fixtures of a module whose own stack is the fixture named
    `stack_fixture`: `client, users, db = stack_fixtures("crashes")`."""

    @pytest.fixture(scope="module")
    def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=request.getfixturevalue(stack_fixture).edge_url, timeout=60) as http:
            yield http

    @pytest.fixture(scope="module")
    def users(request: pytest.FixtureRequest, client: httpx.Client) -> UserFactory:
        return user_factory(request.getfixturevalue(stack_fixture), client)

    @pytest.fixture
    async def db(request: pytest.FixtureRequest) -> AsyncIterator[asyncpg.Connection]:
        async with request.getfixturevalue(stack_fixture).database() as conn:
            yield conn

    return client, users, db


def reconcile_cli(stack: Stack) -> subprocess.CompletedProcess[str]:
    """`fsg-billing reconcile` as an operator runs it: a separate process reading DATABASE_URL."""
    return subprocess.run([sys.executable, "-m", "services.billing.cli", "reconcile"], cwd=REPO_ROOT,
                          env=stack.env, capture_output=True, text=True, timeout=120, check=False)


def assert_reconciled(stack: Stack) -> None:
    result = reconcile_cli(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every balance matches the ledger" in result.stdout


@dataclass(frozen=True)
class Books:
    """One user's money, read back from the database after a run."""

    available: Decimal
    held: Decimal
    granted: Decimal  # grant ledger rows (initial credits included)
    charged: Decimal  # usage ledger rows, as a positive number
    logged: Decimal  # sum of usage_logs.credits_cost
    posted: Decimal  # sum of posted hold resolutions
    pending_holds: int
    negative_rows: int  # ledger rows whose balance_after went below zero


async def books(db: asyncpg.Connection, user_id: int) -> Books:
    row = await db.fetchrow(
        """SELECT a.available, a.held,
              (SELECT COALESCE(sum(credits_amount), 0) FROM credit_transactions
                WHERE user_id = $1 AND transaction_type = 'grant') AS granted,
              (SELECT COALESCE(sum(-credits_amount), 0) FROM credit_transactions
                WHERE user_id = $1 AND transaction_type = 'usage') AS charged,
              (SELECT COALESCE(sum(credits_cost), 0) FROM usage_logs WHERE user_id = $1) AS logged,
              (SELECT COALESCE(sum(r.amount) FILTER (WHERE r.outcome = 'posted'), 0)
                 FROM credit_holds h JOIN credit_hold_resolutions r ON r.hold_id = h.id
                WHERE h.user_id = $1) AS posted,
              (SELECT count(*) FROM credit_holds h WHERE h.user_id = $1 AND NOT EXISTS
                  (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)) AS pending_holds,
              (SELECT count(*) FROM credit_transactions WHERE user_id = $1 AND balance_after < 0) AS negative_rows
           FROM credit_accounts a WHERE a.user_id = $1""", user_id)
    return Books(**dict(row))


async def assert_books_balance(db: asyncpg.Connection, user_id: int) -> Books:
    """Nothing held or pending, never below zero, and the ledger, the usage log and the hold
    resolutions all agree on what was charged; available = granted - charged."""
    b = await books(db, user_id)
    assert b.pending_holds == 0 and b.held == 0, b
    assert b.negative_rows == 0 and b.available >= 0, b
    assert b.charged == b.logged == b.posted, b
    assert b.available == b.granted - b.charged, b
    return b


@dataclass(frozen=True)
class Outcome:
    """How one request id ended in the database."""

    holds: int
    resolutions: list[str]  # posted | voided | expired, one per resolved hold
    usage_rows: int
    successful_rows: int
    charged: Decimal  # usage rows' credits_cost
    ledger_usage: Decimal  # usage ledger rows of this request's holds


async def outcome(db: asyncpg.Connection, request_id: str) -> Outcome:
    holds = await db.fetch(
        """SELECT h.id, r.outcome FROM credit_holds h LEFT JOIN credit_hold_resolutions r ON r.hold_id = h.id
           WHERE h.request_id = $1""", request_id)
    usage = await db.fetch("SELECT response_success, credits_cost FROM usage_logs WHERE request_id = $1", request_id)
    ledger = await db.fetchval(
        """SELECT COALESCE(sum(-t.credits_amount), 0) FROM credit_transactions t
           JOIN credit_holds h ON h.id = t.hold_id WHERE h.request_id = $1 AND t.transaction_type = 'usage'""",
        request_id)
    return Outcome(
        holds=len(holds),
        resolutions=sorted(str(h["outcome"]) for h in holds if h["outcome"] is not None),
        usage_rows=len(usage),
        successful_rows=sum(1 for u in usage if u["response_success"]),
        charged=sum((u["credits_cost"] for u in usage), Decimal(0)),
        ledger_usage=ledger,
    )


async def assert_charged_once(db: asyncpg.Connection, request_id: str, charged: Decimal) -> None:
    """A 200: one hold, posted once, one successful usage row and one usage ledger amount, all = charged."""
    got = await outcome(db, request_id)
    assert got == Outcome(holds=1, resolutions=["posted"], usage_rows=1, successful_rows=1, charged=charged,
                          ledger_usage=charged), request_id


async def assert_not_charged(db: asyncpg.Connection, request_id: str, resolution: str | None = None) -> Outcome:
    """A failed call: its one hold was voided or expired (never posted) with one failed usage row, or it
    never placed a hold at all; either way nothing was charged."""
    got = await outcome(db, request_id)
    assert got.charged == 0 and got.ledger_usage == 0 and got.successful_rows == 0, (request_id, got)
    assert got.holds in (0, 1) and got.usage_rows == got.holds and len(got.resolutions) == got.holds, got
    if got.holds:
        assert got.resolutions[0] in ("voided", "expired"), got
        if resolution is not None:
            assert got.resolutions == [resolution], got
    return got


async def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll an async predicate until it holds (a hang guard, not a performance assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def structure_call(client: httpx.Client, user: TestUser, fault: str = "") -> httpx.Response:
    headers = {**user.headers, **({"X-Sim-Fault": fault} if fault else {})}
    return client.post("/api/generate-structure", headers=headers, json=STRUCTURE_BODY)
