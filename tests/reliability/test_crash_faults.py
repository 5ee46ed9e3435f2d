"""Crashes (`kill -9`, no graceful drain) in the middle of a metered call: of the generation service, of
billing between Reserve and Commit, and of the edge itself. Each hold is settled exactly once or voided
(released, or expired by the sweeper), nothing is charged twice, and every request ends with either a
settled usage row or a released/expired hold."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.helpers import PAID_PROJECTS, TestUser, UserFactory
from tests.reliability.support import (
    assert_books_balance,
    assert_charged_once,
    assert_not_charged,
    assert_reconciled,
    own_stack,
    parse,
    stack_fixtures,
    structure_call,
    wait_for,
)
from tests.stack import Stack

#: The edge's hold lifetime here: its generation deadline (10 s) plus its settle-retry window (20 s), no
#: margin. Long enough for any non-hanging call here (slow:3000 plus a billing restart), short enough to
#: wait out.
HOLD_TTL = 30
#: The call that is in flight when something dies.
SLOW = "slow:3000"


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = {
        "EDGE_GENERATION_TIMEOUT_SECONDS": "10",
        "EDGE_HOLD_MARGIN_SECONDS": "0",
        # Claude may take the whole slow call; the session stack's 2 s would time it out.
        "GENERATION_ANTHROPIC_TIMEOUT_SECONDS": "10",
    }
    with own_stack(tmp_path_factory, "crashes", settings) as stack:
        # A second edge on the same services that gives up on a settlement after 1 s (the first keeps the
        # default 20 s): for billing staying down past the edge's retry window.
        stack.add_replica("edge_short", "edge", {"EDGE_SETTLE_RETRY_SECONDS": "1"})
        yield stack


client, users, db = stack_fixtures("crashes")


@dataclass
class InFlight:
    """A slow metered call running in a thread, so the test can kill things while it is in flight."""

    thread: threading.Thread
    result: dict[str, httpx.Response | BaseException] = field(default_factory=dict)

    def response(self, timeout: float = 90) -> httpx.Response:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request hung"
        outcome = self.result["response"]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def start_call(stack: Stack, user: TestUser, edge: str = "edge") -> InFlight:
    call = InFlight(threading.Thread(target=lambda: None))

    def run() -> None:
        try:
            with httpx.Client(base_url=stack.url(edge), timeout=60) as http:
                call.result["response"] = structure_call(http, user, SLOW)
        except BaseException as exc:  # the edge may die under it: keep the error for the test
            call.result["response"] = exc

    call.thread = threading.Thread(target=run, daemon=True)
    call.thread.start()
    return call


async def pending_hold(db: asyncpg.Connection, user_id: int) -> asyncpg.Record:
    """Wait for the call's hold (Reserve done, so Execute is next or under way) and return it."""
    query = """SELECT h.id, h.request_id FROM credit_holds h WHERE h.user_id = $1 AND NOT EXISTS
               (SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)"""

    async def placed() -> bool:
        return await db.fetchrow(query, user_id) is not None

    await wait_for(placed, 30, "the hold")
    await asyncio.sleep(0.5)  # Claude is now "thinking"
    row = await db.fetchrow(query, user_id)
    assert row is not None
    return row


async def wait_resolved(db: asyncpg.Connection, hold_id: object, timeout: float) -> None:
    async def resolved() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM credit_hold_resolutions WHERE hold_id = $1", hold_id))

    await wait_for(resolved, timeout, f"hold {hold_id} to be resolved")


def assert_json_error(response: httpx.Response, status: tuple[int, ...]) -> dict[str, object]:
    assert response.status_code in status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = parse(response)
    assert isinstance(body["error"], str)
    return body


async def works_again(client: httpx.Client, user: TestUser, db: asyncpg.Connection) -> None:
    response = await asyncio.to_thread(structure_call, client, user)
    assert response.status_code == 200, response.text
    await assert_charged_once(db, response.headers["X-Request-ID"], Decimal(response.headers["X-Credits-Charged"]))


async def test_generation_killed_mid_call_voids_the_hold(
    crashes: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=50, prefix="genkill")
    call = start_call(crashes, user)
    hold = await pending_hold(db, user.id)
    crashes.kill("generation")
    response = await asyncio.to_thread(call.response)
    assert_json_error(response, (502, 503))
    assert response.headers["X-Request-ID"] == hold["request_id"]
    got = await assert_not_charged(db, hold["request_id"], "voided")
    assert got.usage_rows == 1
    books = await assert_books_balance(db, user.id)
    assert books.available == 50

    await asyncio.to_thread(crashes.restart, "generation")
    await works_again(client, user, db)
    await assert_books_balance(db, user.id)
    await asyncio.to_thread(assert_reconciled, crashes)


async def test_billing_killed_between_reserve_and_commit_settles_once(
    crashes: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """Billing comes back within the edge's settle-retry window: the retried Commit posts exactly once."""
    user = users.create(credits=50, prefix="billkill")
    call = start_call(crashes, user)
    hold = await pending_hold(db, user.id)
    crashes.kill("billing")

    async def executed() -> bool:  # Claude answered and the project was staged: the Commit is due
        return bool(await db.fetchval("SELECT count(*) FROM projects WHERE user_id = $1", user.id))

    await wait_for(executed, 30, "the call to finish executing")
    await asyncio.sleep(1.0)  # the edge is now retrying the Commit against a dead billing
    assert call.thread.is_alive()
    await asyncio.to_thread(crashes.restart, "billing")
    response = await asyncio.to_thread(call.response)
    assert response.status_code == 200, response.text
    charged = Decimal(response.headers["X-Credits-Charged"])
    assert charged > 0 and response.headers["X-Request-ID"] == hold["request_id"]
    await assert_charged_once(db, hold["request_id"], charged)
    books = await assert_books_balance(db, user.id)
    assert books.available == 50 - charged
    assert Decimal(response.headers["X-Credits-Remaining"]) == books.available
    await asyncio.to_thread(assert_reconciled, crashes)


async def test_billing_down_past_the_retry_window_lets_the_hold_expire(
    crashes: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The edge gives up on the Commit and cannot reach billing to learn whether it landed: a 503 JSON that
    says exactly that (not a guess). The hold stays pending until billing is back and its sweeper expires it:
    the user is not charged, one failed usage row, and the staged result never becomes part of a project."""
    user = users.create(credits=50, prefix="billdown")
    call = start_call(crashes, user, edge="edge_short")
    hold = await pending_hold(db, user.id)
    crashes.kill("billing")
    try:
        response = await asyncio.to_thread(call.response)
        body = assert_json_error(response, (503,))
        assert body["error"] == "Billing unavailable" and body["requestId"] == hold["request_id"]
        assert "could not reach billing to confirm whether this call was charged" in str(body["message"])
        assert await db.fetchval("SELECT count(*) FROM credit_hold_resolutions WHERE hold_id = $1", hold["id"]) == 0
    finally:
        await asyncio.to_thread(crashes.restart, "billing")
    await wait_resolved(db, hold["id"], HOLD_TTL + 30)
    got = await assert_not_charged(db, hold["request_id"], "expired")
    assert got.usage_rows == 1
    error = await db.fetchval("SELECT error_message FROM usage_logs WHERE hold_id = $1", hold["id"])
    assert "expired" in error
    assert await db.fetchval(PAID_PROJECTS, user.id) == 0
    books = await assert_books_balance(db, user.id)
    assert books.available == 50
    await asyncio.to_thread(assert_reconciled, crashes)


async def test_edge_killed_mid_request_hold_expires(
    crashes: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """Nobody is left to settle the hold: the sweeper expires it after its TTL, nothing is charged."""
    user = users.create(credits=50, prefix="edgekill")
    call = start_call(crashes, user)
    hold = await pending_hold(db, user.id)
    crashes.kill("edge")
    with pytest.raises(httpx.TransportError):
        await asyncio.to_thread(call.response)
    await asyncio.to_thread(crashes.restart, "edge")
    await wait_resolved(db, hold["id"], HOLD_TTL + 30)
    got = await assert_not_charged(db, hold["request_id"], "expired")
    assert got.usage_rows == 1
    books = await assert_books_balance(db, user.id)
    assert books.available == 50
    await works_again(client, user, db)
    await assert_books_balance(db, user.id)
    await asyncio.to_thread(assert_reconciled, crashes)
