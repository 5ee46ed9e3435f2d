"""One stack for the alert tests (the session stack has no SMTP server), with the local mail sink as a real
SMTP server on a free port, and one webhook receiver."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from tests.alerts.support import ALERT_SETTINGS, MailSink, Receiver, receiving, wait_port
from tests.helpers import UserFactory
from tests.reliability.support import own_stack
from tests.stack import Stack, free_port


@pytest.fixture(scope="package")
def alerts_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sink_port = free_port()
    settings = {**ALERT_SETTINGS, "SMTP_URL": f"smtp://127.0.0.1:{sink_port}"}
    with own_stack(tmp_path_factory, "alerts", settings) as stack:
        stack.start_process("mailsink", [sys.executable, "-m", "devstack.mailsink"],
                            env={"MAILSINK_PORT": str(sink_port)})
        wait_port(sink_port)
        yield stack


@pytest.fixture(scope="package")
def sink(alerts_stack: Stack) -> MailSink:
    return MailSink(alerts_stack.data_dir / "mail")


@pytest.fixture(scope="package")
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture(scope="package")
def client(alerts_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=alerts_stack.edge_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="package")
def users(alerts_stack: Stack, client: httpx.Client) -> UserFactory:
    return UserFactory(client, {"X-API-Key": alerts_stack.admin_key})


@pytest.fixture
async def db(alerts_stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    async with alerts_stack.database() as conn:
        yield conn
