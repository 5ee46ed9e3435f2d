"""Provider faults through the whole stack: the generation service's bounded retry policy against each
simulator fault. After the last try the user gets a clear 502/503/504 JSON, is not charged, one failed usage
row says what happened and after how many attempts, and the hold is voided; a transient fault is retried
(waiting at least the provider's retry-after) and the call is then charged once.

Attempts are counted and timed by the simulator itself (the `tag:` fault item and GET /_sim/attempts), so the
tests check what reached the provider, not just what the edge reports. Timing assertions are lower bounds only.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import asyncpg
import httpx
import pytest

from tests.generation.test_endpoints import STORY, assert_charged, parse, post, snapshot
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

URL, ENDPOINT = "/api/generate-structure", "/api/generate-structure"
BODY = {"storyInput": STORY, "template": "three-act"}
ATTEMPTS = re.compile(r"\bafter (\d+) attempts?\b")


@dataclass(frozen=True)
class Policy:
    """The retry settings tests/stack.py gives the generation service."""

    max_attempts: int
    budget: float
    attempt_timeout: float
    base_delay: float


@pytest.fixture(scope="module")
def policy(stack: Stack) -> Policy:
    env = stack.env
    chosen = Policy(int(env["GENERATION_RETRY_MAX_ATTEMPTS"]), float(env["GENERATION_RETRY_BUDGET_SECONDS"]),
                    float(env["GENERATION_ANTHROPIC_TIMEOUT_SECONDS"]),
                    float(env["GENERATION_RETRY_BASE_DELAY_SECONDS"]))
    # What the expectations below rely on: room for every retry of a 1 s retry-after within the budget, but
    # not for as many timed-out attempts as max_attempts allows.
    assert (chosen.max_attempts - 1) * 1.0 < chosen.budget - 1.0
    assert chosen.attempt_timeout * (chosen.max_attempts - 1) >= chosen.budget
    return chosen


def sim_attempts(stack: Stack, tag: str) -> list[dict[str, Any]]:
    """What the simulator saw of requests carrying `tag`: attempt number and arrival time, oldest first."""
    response = httpx.get(f"http://127.0.0.1:{stack.ports['simulator']}/_sim/attempts", params={"tag": tag})
    assert response.status_code == 200, response.text
    return list(response.json()["attempts"])


async def transaction_types(db: asyncpg.Connection, user: TestUser) -> list[str]:
    """The user's ledger entries tied to holds (i.e. to metered calls), oldest first."""
    rows = await db.fetch("SELECT transaction_type FROM credit_transactions WHERE user_id = $1 "
                          "AND hold_id IS NOT NULL ORDER BY id", user.id)
    return [r["transaction_type"] for r in rows]


def new_tag() -> str:
    return "t" + uuid.uuid4().hex[:12]


async def assert_failed_and_free(db: asyncpg.Connection, user: TestUser, response: httpx.Response, before: Any,
                                 *, status: int, error_type: str, retry_after: int | None) -> int:
    """The call failed cleanly and changed nothing; returns the attempt count its usage row records."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = parse(response)
    assert body["error"] == "Generation failed" and body["type"] == error_type
    assert body["message"].endswith("No credits were charged.")
    assert "usage" not in body and "X-Credits-Charged" not in response.headers
    if retry_after is None:
        assert "Retry-After" not in response.headers
    else:
        assert response.headers["Retry-After"] == str(retry_after)

    after = await snapshot(db, user.id)
    assert after.available == before.available  # not charged
    assert after.held == 0  # hold released
    assert after.usage_rows == before.usage_rows + 1 and after.holds == before.holds + 1
    rows = await db.fetch("SELECT * FROM usage_logs WHERE request_id = $1", body["requestId"])
    assert len(rows) == 1
    row = rows[0]
    assert row["response_success"] is False and row["credits_cost"] == 0 and row["endpoint"] == ENDPOINT
    assert row["error_message"].startswith(f"{error_type}: ")
    resolution = await db.fetchrow("SELECT outcome, amount FROM credit_hold_resolutions WHERE hold_id = $1",
                                   row["hold_id"])
    assert resolution is not None and (resolution["outcome"], resolution["amount"]) == ("voided", 0)
    assert await transaction_types(db, user) == ["hold", "release"]  # no usage debit
    match = ATTEMPTS.search(row["error_message"])
    assert match, row["error_message"]
    assert match.group(0) in body["message"]  # the user is told too
    return int(match.group(1))


#: fault → (status, error type, Retry-After); the attempt count each should reach is worked out in the test.
LAST_TRY = {
    "rate_limit": (503, "rate_limited", 1),  # the simulator's retry-after: 1, passed on
    "overloaded": (503, "overloaded", 5),  # no retry-after from the provider: our default
    "server_error": (502, "upstream_error", None),
    "hang": (504, "timeout", None),
    "slow:6000": (504, "timeout", None),  # answers, but long after the per-attempt timeout
    "bad_schema": (502, "invalid_output", None),
}


@pytest.mark.parametrize("fault", list(LAST_TRY))
async def test_fault_after_last_try(stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                    policy: Policy, fault: str) -> None:
    status, error_type, retry_after = LAST_TRY[fault]
    user = users.create(credits=100)
    tag = new_tag()
    before = await snapshot(db, user.id)
    response = post(client, user, URL, BODY, **{"X-Sim-Fault": f"{fault},tag:{tag}"})
    attempts = await assert_failed_and_free(db, user, response, before, status=status, error_type=error_type,
                                            retry_after=retry_after)
    seen = sim_attempts(stack, tag)
    assert [a["attempt"] for a in seen] == list(range(attempts))  # numbered 0.. and all reached the provider
    if fault == "bad_schema":
        assert attempts == 1  # invalid output is not retried (the provider billed us for it)
    elif fault in ("hang", "slow:6000"):
        # Each try waits out the per-attempt timeout, so the budget ends the retries before max_attempts.
        assert 1 <= attempts < policy.max_attempts
    else:
        assert attempts == policy.max_attempts
    if fault == "rate_limit":
        gaps = [b["at"] - a["at"] for a, b in pairwise(seen)]
        assert all(gap >= 1.0 for gap in gaps), gaps  # the provider's retry-after: 1 was honoured


@pytest.mark.parametrize(("fault", "failures", "min_gap"), [
    ("rate_limit*1", 1, 1.0),  # retry-after: 1 from the simulator
    ("overloaded*2", 2, None),  # no retry-after: backoff of at least the base delay
    ("overloaded*2,retry_after_ms:400", 2, 0.4),
    ("server_error*1", 1, None),
    ("hang*1", 1, None),  # a timed-out attempt, then an answer
])
async def test_transient_fault_retried_then_charged_once(
    stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, policy: Policy,
    fault: str, failures: int, min_gap: float | None,
) -> None:
    user = users.create(credits=100)
    tag = new_tag()
    before = await snapshot(db, user.id)
    response = post(client, user, URL, BODY, **{"X-Sim-Fault": f"{fault},tag:{tag}"})
    await assert_charged(db, user, response, before.available, ENDPOINT)
    after = await snapshot(db, user.id)
    assert after.usage_rows == before.usage_rows + 1 and after.holds == before.holds + 1
    rows = await db.fetch("SELECT response_success FROM usage_logs WHERE user_id = $1", user.id)
    assert [r["response_success"] for r in rows] == [True]  # one successful row, no failed one
    assert (await transaction_types(db, user)).count("usage") == 1  # charged exactly once

    seen = sim_attempts(stack, tag)
    assert [a["attempt"] for a in seen] == list(range(failures + 1))
    gaps = [b["at"] - a["at"] for a, b in pairwise(seen)]
    assert all(gap >= (min_gap if min_gap is not None else policy.base_delay) for gap in gaps), gaps


async def test_retry_after_beyond_budget_stops_at_once(stack: Stack, client: httpx.Client, users: UserFactory,
                                                      db: asyncpg.Connection, policy: Policy) -> None:
    """A retry-after that would end past the budget is not waited out: one attempt, and the user gets the
    provider's retry-after."""
    assert policy.budget < 30
    user = users.create(credits=100)
    tag = new_tag()
    before = await snapshot(db, user.id)
    response = post(client, user, URL, BODY, **{"X-Sim-Fault": f"rate_limit,retry_after:30,tag:{tag}"})
    attempts = await assert_failed_and_free(db, user, response, before, status=503, error_type="rate_limited",
                                            retry_after=30)
    assert attempts == 1
    assert len(sim_attempts(stack, tag)) == 1


async def test_client_error_is_not_retried(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    """A 4xx other than 429 means our request is wrong: asking again cannot help. (An unknown fault name makes
    the simulator answer 400.)"""
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    response = post(client, user, URL, BODY, **{"X-Sim-Fault": "no_such_fault"})
    attempts = await assert_failed_and_free(db, user, response, before, status=502, error_type="upstream_error",
                                            retry_after=None)
    assert attempts == 1
    assert "(400)" in parse(response)["message"]
