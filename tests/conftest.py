"""Shared fixtures: one real stack per test session (its own ports and data), and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest

from services.billing.repository import BillingRepository
from tests.helpers import UserFactory
from tests.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.edge_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def admin_headers(stack: Stack) -> dict[str, str]:
    return {"X-API-Key": stack.admin_key}


@pytest.fixture(scope="session")
def users(client: httpx.Client, admin_headers: dict[str, str]) -> UserFactory:
    return UserFactory(client, admin_headers)


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    async with stack.database() as conn:
        yield conn


@pytest.fixture
async def repo(stack: Stack) -> AsyncIterator[BillingRepository]:
    """Billing's repository on the stack's database, for reading the books as billing itself does."""
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=2)
    try:
        yield BillingRepository(pool)
    finally:
        await pool.close()


@pytest.fixture
async def grpc_channel(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    service = getattr(request, "param", "billing")
    async with stack.channel(service) as channel:
        yield channel


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep whole-stack restarts (fault tests) last so they don't slow other tests' retries, and the check of
    the books after the whole suite after everything."""
    def order(item: pytest.Item) -> tuple[bool, bool]:
        name = Path(str(item.fspath)).name
        return name == "test_books_after_the_suite.py", "faults" in name

    items.sort(key=order)
