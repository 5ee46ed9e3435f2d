"""Admins for tests that touch the last-enabled-admin rule on the shared session stack.

Every test in a session shares one stack and its bootstrap admin (`admin`, key `stack.admin_key`), so a test
that might disable or rotate it (on purpose, or because the rule is broken) restores it on the way out, and
an extra admin lives only as long as the test that made it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from services.auth.repository import AuthRepository, UserRecord
from tests.stack import Stack

BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True)
class Admin:
    user: UserRecord
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


async def enabled_admins(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT username FROM user_accounts WHERE is_admin AND disabled_at IS NULL ORDER BY id")
    return [r["username"] for r in rows]


@asynccontextmanager
async def bootstrap_admin_kept(stack: Stack) -> AsyncIterator[None]:
    """Put the bootstrap admin's key and enabled state back as they were, whatever the test did to them."""
    select = "SELECT api_key_hash, api_key_prefix, disabled_at FROM user_accounts WHERE username = $1"
    async with stack.database() as conn:
        before = await conn.fetchrow(select, BOOTSTRAP_ADMIN)
    try:
        yield
    finally:
        async with stack.database() as conn:
            await conn.execute(
                """UPDATE user_accounts SET api_key_hash = $2, api_key_prefix = $3, disabled_at = $4
                   WHERE username = $1 AND (api_key_hash, api_key_prefix, disabled_at)
                         IS DISTINCT FROM ($2, $3, $4)""",
                BOOTSTRAP_ADMIN, before["api_key_hash"], before["api_key_prefix"], before["disabled_at"])


@asynccontextmanager
async def extra_admin(stack: Stack) -> AsyncIterator[Admin]:
    """A second admin, made as auth makes any user (the REST API cannot make admins), deleted afterwards."""
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=1)
    try:
        name = f"admin2_{uuid.uuid4().hex[:12]}"
        user, key = await AuthRepository(pool).create_user(name, f"{name}@example.test", is_admin=True)
        try:
            yield Admin(user, key)
        finally:
            await pool.execute("DELETE FROM user_accounts WHERE id = $1", user.id)
    finally:
        await pool.close()
