"""Which database failures a service answers as UNAVAILABLE ("retry; nothing was done") rather than as a bug.

The case here was met in tests/reliability/test_database_faults.py: PostgreSQL stopping under load left
asyncpg's connection mid-protocol, and the next statement on it failed with InternalClientError ("cannot
switch to state 12; another operation (2) is in progress") before it was sent. Answered as a bug, the edge
turned it into a 502 "generation service failed" during an outage every other call answered with 503."""

from __future__ import annotations

import asyncpg
import pytest

from common.errors import Refusal, Unavailable, status_of


@pytest.mark.parametrize("exc", [
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_a_database_going_away_is_unavailable(exc: BaseException) -> None:
    assert status_of(exc) == (Refusal.UNAVAILABLE, Unavailable.message)


def test_a_bug_stays_a_bug() -> None:
    assert status_of(ValueError("not a database problem")) is None
