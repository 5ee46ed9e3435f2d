"""Fixtures: a real uvicorn server running the simulator in a background thread, and SDK clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest
import uvicorn

from simulator.app import create_app
from simulator.settings import SimulatorSettings


@contextlib.contextmanager
def running_simulator(settings: SimulatorSettings) -> Iterator[str]:
    """Serve `create_app(settings)` on a pre-bound ephemeral port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        loop="asyncio",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("simulator did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    with running_simulator(SimulatorSettings(fault="")) as url:
        yield url


@pytest.fixture
def start_simulator() -> Any:
    """The `running_simulator` context manager, for tests that need their own start-up settings."""
    return running_simulator


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim_url, api_key="sim", max_retries=0) as sdk:
        yield sdk
