"""The seam between generation and billing: a result is delivered and kept only if it is paid.

Generation dies, or the edge's deadline fires, right after the result was saved and before billing posted
the hold. Whatever happens next (a retry with the same Idempotency-Key, a retry without one, or nothing),
the user is charged exactly once for a result they can see, or not at all and the result is not kept: never
a 200 that charged nothing, never a result in the project that nobody paid for.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.helpers import TestUser, UserFactory
from tests.reliability.support import (
    STRUCTURE_BODY,
    assert_books_balance,
    assert_charged_once,
    assert_reconciled,
    own_stack,
    stack_fixtures,
)
from tests.stack import Stack

#: Generation outlives the edge's deadline by this much when told to stall after saving.
EDGE_DEADLINE_SECONDS = 4
STALL = "stall_after_save:6000"


@pytest.fixture(scope="module")
def seam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = {"EDGE_GENERATION_TIMEOUT_SECONDS": str(EDGE_DEADLINE_SECONDS), "FSG_FAULT_INJECTION": "1",
                "GENERATION_CLEANUP_INTERVAL_SECONDS": "1"}
    with own_stack(tmp_path_factory, "seam", settings) as stack:
        yield stack


client, users, db = stack_fixtures("seam")


def structure(client: httpx.Client, user: TestUser, *, key: str | None = None, fault: str = "") -> httpx.Response:
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {}), **({"X-Sim-Fault": fault} if fault else {})}
    return client.post("/api/generate-structure", headers=headers, json=STRUCTURE_BODY)


def visible_projects(client: httpx.Client, user: TestUser) -> list[str]:
    response = client.get("/api/projects", headers=user.headers)
    assert response.status_code == 200, response.text
    return [p["projectPath"] for p in response.json()["projects"]]


async def assert_paid_once_or_refused(db: asyncpg.Connection, client: httpx.Client, user: TestUser,
                                      retry: httpx.Response) -> None:
    """The retry either charged exactly once for one visible result, or charged nothing and kept nothing."""
    books = await assert_books_balance(db, user.id)
    if retry.status_code == 200:
        charged = Decimal(retry.headers["X-Credits-Charged"])
        assert charged > 0, "a 200 that charged nothing"
        await assert_charged_once(db, retry.headers["X-Request-ID"], charged)
        assert books.charged == charged
        assert visible_projects(client, user) == [retry.json()["projectPath"]]
    else:
        assert retry.status_code >= 400, retry.text
        assert books.charged == 0
        assert visible_projects(client, user) == []


@pytest.mark.parametrize("fault", ["crash_after_save", STALL])
async def test_a_retry_after_a_fault_past_the_save_is_charged_once_or_refused(
    seam: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, fault: str
) -> None:
    user = users.create(credits=50, prefix="seam")
    key = uuid.uuid4().hex
    first = await asyncio.to_thread(structure, client, user, key=key, fault=fault)
    assert first.status_code in (502, 503, 504), first.text
    assert "not been charged" in first.json()["message"] or "No credits were charged" in first.json()["message"]
    if fault == "crash_after_save":
        await asyncio.to_thread(seam.restart, "generation")
    else:
        await asyncio.sleep(3)  # the stalled Execute finishes on generation after the edge gave up
    assert visible_projects(client, user) == [], "the unpaid result must not be kept"

    retry = await asyncio.to_thread(structure, client, user, key=key)
    await assert_paid_once_or_refused(db, client, user, retry)
    again = await asyncio.to_thread(structure, client, user, key=key)
    assert again.status_code == retry.status_code
    if retry.status_code == 200:
        assert again.headers["Idempotent-Replayed"] == "true" and again.json() == retry.json()
    await assert_books_balance(db, user.id)
    await asyncio.to_thread(assert_reconciled, seam)


async def test_without_a_key_the_unpaid_result_is_not_kept(
    seam: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=50, prefix="seamnokey")
    first = await asyncio.to_thread(structure, client, user, fault="crash_after_save")
    assert first.status_code in (502, 503), first.text
    await asyncio.to_thread(seam.restart, "generation")
    assert visible_projects(client, user) == []
    books = await assert_books_balance(db, user.id)
    assert books.charged == 0 and books.available == 50
    await asyncio.to_thread(assert_reconciled, seam)


# -- answers lost between the edge and billing ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def impatient(seam: Stack) -> Iterator[httpx.Client]:
    """An edge that waits 1 s for billing's answers and retries a settlement for 2 s: a billing stall of a few
    seconds loses its answers."""
    env = {"EDGE_RPC_TIMEOUT_SECONDS": "1", "EDGE_SETTLE_RETRY_SECONDS": "2"}
    with seam.replica("edge_impatient", "edge", env) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


async def wait_for_outcome(db: asyncpg.Connection, request_id: str, timeout: float = 10) -> str | None:
    """The resolution of the request's hold once it has one (None if it never got one in time)."""
    for _ in range(int(timeout * 10)):
        outcome = await db.fetchval(
            """SELECT r.outcome FROM credit_holds h JOIN credit_hold_resolutions r ON r.hold_id = h.id
               WHERE h.request_id = $1""", request_id)
        if outcome is not None:
            return str(outcome)
        await asyncio.sleep(0.1)
    return None


async def test_a_reserve_whose_answer_is_lost_is_voided_at_once(
    impatient: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """Billing placed the hold but its answer never reached the edge: the edge voids the hold id, so the
    credits and the concurrency slot come back in seconds, not when the hold would expire (a minute here)."""
    user = users.create(credits=50, prefix="lostreserve")
    response = await asyncio.to_thread(structure, impatient, user, fault="stall_after_reserve:2500")
    assert response.status_code in (503, 504), response.text
    assert await wait_for_outcome(db, response.headers["X-Request-ID"]) == "voided"
    books = await assert_books_balance(db, user.id)
    assert books.available == 50
    assert await db.fetchval("SELECT holds_open FROM credit_accounts WHERE user_id = $1", user.id) == 0


async def test_a_reserve_that_arrives_after_its_void_places_nothing(
    impatient: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The edge gave up before billing even placed the hold: its void remembers the id, and the Reserve that
    runs afterwards places nothing."""
    user = users.create(credits=50, prefix="latereserve")
    response = await asyncio.to_thread(structure, impatient, user, fault="stall_before_reserve:2500")
    assert response.status_code in (503, 504), response.text
    await asyncio.sleep(3)  # the stalled Reserve has run by now
    request_id = response.headers["X-Request-ID"]
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE request_id = $1", request_id) == 0
    assert await db.fetchval("SELECT count(*) FROM voided_hold_ids WHERE user_id = $1", user.id) == 1
    books = await assert_books_balance(db, user.id)
    assert books.available == 50


async def test_a_commit_whose_answer_is_lost_is_answered_truthfully(
    impatient: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The Commit landed, but every answer to it was lost until the edge's retry window closed. The edge
    asks billing (a Release, which answers already_posted) before answering: the call was charged, so the
    answer is the result, not "you have not been charged"."""
    user = users.create(credits=50, prefix="lostcommit")
    response = await asyncio.to_thread(structure, impatient, user, fault="stall_after_commit:3000")
    assert response.status_code == 200, response.text
    charged = Decimal(response.headers["X-Credits-Charged"])
    assert charged > 0
    await assert_charged_once(db, response.headers["X-Request-ID"], charged)
    assert visible_projects(impatient, user) == [response.json()["projectPath"]]
    books = await assert_books_balance(db, user.id)
    assert books.available == 50 - charged


async def test_an_edge_that_dies_before_its_commit_charges_nothing_and_keeps_nothing(
    seam: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The edge dies once the result is staged, before it posts the hold. Nobody will post it: it expires at
    its deadline (5 s on this edge), nothing is charged, the staged project is never listed and is then
    deleted, and a retry with the key runs afresh and is charged once."""
    user = users.create(credits=50, prefix="edgedies")
    key = uuid.uuid4().hex
    env = {"EDGE_SETTLE_RETRY_SECONDS": "1", "EDGE_HOLD_MARGIN_SECONDS": "0"}
    with seam.replica("edge_doomed", "edge", env) as url, httpx.Client(base_url=url, timeout=30) as doomed, \
            pytest.raises(httpx.TransportError):
        await asyncio.to_thread(structure, doomed, user, key=key, fault="crash_before_commit")
    hold = await db.fetchrow("SELECT id, request_id FROM credit_holds WHERE user_id = $1", user.id)
    staged = await db.fetchval("SELECT count(*) FROM projects WHERE hold_id = $1", hold["id"])
    assert staged == 1 and visible_projects(client, user) == []
    assert await wait_for_outcome(db, hold["request_id"], timeout=30) == "expired"
    for _ in range(50):  # generation's cleanup runs every second here
        if not await db.fetchval("SELECT count(*) FROM projects WHERE hold_id = $1", hold["id"]):
            break
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM projects WHERE hold_id = $1", hold["id"]) == 0
    books = await assert_books_balance(db, user.id)
    assert books.charged == 0 and books.available == 50

    retry = await asyncio.to_thread(structure, client, user, key=key)
    await assert_paid_once_or_refused(db, client, user, retry)
    assert retry.status_code == 200
    await asyncio.to_thread(assert_reconciled, seam)
