"""What every operator CLI shares: run one repository call against the service's database and exit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from common.db import create_pool
from common.dsn import resolve_dsn
from common.settings import CommonSettings

R = TypeVar("R")
T = TypeVar("T")


def run_with_repository(
    settings: CommonSettings, repository: Callable[[asyncpg.Pool], R], action: Callable[[R], Awaitable[T]]
) -> T:
    """Open a small pool (DATABASE_URL, or the embedded server `make run` started), run, close."""

    async def go() -> T:
        pool = await create_pool(resolve_dsn(settings), min_size=1, max_size=2)
        try:
            return await action(repository(pool))
        finally:
            await pool.close()

    return asyncio.run(go())
