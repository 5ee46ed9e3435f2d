"""The last enabled admin cannot be disabled, nor its key rotated away over the API, even by two concurrent
requests that each leave the other admin (the rule is decided in the database, not by a read-then-write),
and `fsg-auth disable` refuses it too. Rotating it on the host (`fsg-auth rotate-admin-key`) stays allowed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from common.errors import DomainError
from services.auth.keys import key_hash
from services.auth.repository import AuthRepository
from tests.auth.admins import BOOTSTRAP_ADMIN, bootstrap_admin_kept, enabled_admins, extra_admin
from tests.stack import REPO_ROOT, Stack

#: Marks this file's racing connections, so the test can see them both blocked before letting them go.
RACERS = "fsg-test-last-admin-race"


@pytest.fixture
async def racing_repo(stack: Stack) -> AsyncIterator[AuthRepository]:
    pool = await asyncpg.create_pool(stack.dsn, min_size=2, max_size=2, server_settings={"application_name": RACERS})
    try:
        yield AuthRepository(pool)
    finally:
        await pool.close()


def _refused(error: BaseException, says: str) -> bool:
    """Auth's refusal: FAILED_PRECONDITION (the edge's 409) with a message that says what was refused."""
    return isinstance(error, DomainError) and error.code == grpc.StatusCode.FAILED_PRECONDITION and says in str(error)


async def _until_blocked(conn: asyncpg.Connection, count: int, timeout: float = 10) -> None:
    """Wait until `count` racing connections are waiting on a lock (so both have read what they will read)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
    while await conn.fetchval(query, RACERS) < count:
        assert time.monotonic() < deadline, "the racing calls never both reached the database"
        await asyncio.sleep(0.02)


async def test_two_concurrent_disables_of_the_last_two_admins_leave_one_enabled(
    stack: Stack, racing_repo: AuthRepository
) -> None:
    async with extra_admin(stack) as other, bootstrap_admin_kept(stack), stack.database() as gate:
        assert await enabled_admins(gate) == [BOOTSTRAP_ADMIN, other.user.username]
        admin = await racing_repo.get_user(username=BOOTSTRAP_ADMIN)
        # Hold both rows so the two calls start together and each sees the other admin enabled; then let go.
        async with gate.transaction():
            await gate.execute("SELECT 1 FROM user_accounts WHERE id = ANY($1::bigint[]) FOR UPDATE",
                               [admin.id, other.user.id])
            racers = [asyncio.create_task(racing_repo.set_disabled(user_id, True))
                      for user_id in (admin.id, other.user.id)]
            await _until_blocked(gate, 2)
        outcomes = await asyncio.gather(*racers, return_exceptions=True)

        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 1, outcomes
        assert _refused(failures[0], "Cannot disable the last enabled admin"), failures
        assert len(await enabled_admins(gate)) == 1


async def test_the_last_enabled_admin_is_refused_and_unchanged(stack: Stack, racing_repo: AuthRepository) -> None:
    async with bootstrap_admin_kept(stack), stack.database() as conn:
        assert await enabled_admins(conn) == [BOOTSTRAP_ADMIN]
        admin = await racing_repo.get_user(username=BOOTSTRAP_ADMIN)
        with pytest.raises(DomainError) as disable:
            await racing_repo.set_disabled(admin.id, True)
        assert _refused(disable.value, "Cannot disable the last enabled admin")
        with pytest.raises(DomainError) as rotate:
            await racing_repo.rotate_key(admin.id)
        assert _refused(rotate.value, "fsg-auth rotate-admin-key")
        row = await conn.fetchrow("SELECT api_key_hash, disabled_at FROM user_accounts WHERE id = $1", admin.id)
        assert row["disabled_at"] is None and bytes(row["api_key_hash"]) == key_hash(stack.admin_key)


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`fsg-auth` as an operator runs it on the host: a separate process reading DATABASE_URL."""
    return subprocess.run([sys.executable, "-m", "services.auth.cli", *args], cwd=REPO_ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_cli_refuses_to_disable_the_last_enabled_admin_but_may_rotate_its_key(
    stack: Stack, racing_repo: AuthRepository
) -> None:
    async with bootstrap_admin_kept(stack), stack.database() as conn:
        assert await enabled_admins(conn) == [BOOTSTRAP_ADMIN]
        refused = _cli(stack, "disable", BOOTSTRAP_ADMIN)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert refused.stderr.strip() == "Cannot disable the last enabled admin", refused.stderr
        assert "disabled" not in refused.stdout
        assert await enabled_admins(conn) == [BOOTSTRAP_ADMIN]
        assert await racing_repo.user_for_key(stack.admin_key) is not None

        async with extra_admin(stack) as other:  # with another enabled admin, either may be disabled
            done = _cli(stack, "disable", other.user.username)
            assert done.returncode == 0 and done.stdout.strip() == f"{other.user.username} disabled", done.stderr
            assert await enabled_admins(conn) == [BOOTSTRAP_ADMIN]

        # On the host the last enabled admin's key may be replaced: the new key is printed right there.
        rotated = _cli(stack, "rotate-admin-key")
        assert rotated.returncode == 0, rotated.stderr
        new_key = re.search(r"admin_[0-9a-f]{64}", rotated.stdout)
        assert new_key and await racing_repo.user_for_key(new_key.group(0)) is not None
        assert await racing_repo.user_for_key(stack.admin_key) is None
