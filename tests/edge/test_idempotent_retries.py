"""ServiceClients.call_idempotent: one plain attempt, then retries while the service is unavailable, within
`retry_for` seconds; any other error is raised at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from edge.clients import FIRST_RETRY_DELAY_SECONDS, ServiceClients
from edge.errors import ApiError
from edge.settings import EdgeSettings


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="test")


class Flaky:
    """A stub method that fails with the given codes, in order, then answers."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.calls: list[float] = []

    async def __call__(self, request: Any, timeout: float | None = None) -> str:
        self.calls.append(time.monotonic())
        if self.codes:
            raise rpc_error(self.codes.pop(0))
        return f"answer to {request}"


@pytest.fixture
async def clients() -> AsyncIterator[ServiceClients]:
    clients = ServiceClients(EdgeSettings(FSG_SERVICE_AUTH="off"))  # type: ignore[call-arg]
    try:
        yield clients
    finally:
        await clients.close()


async def test_first_attempt_answers_without_waiting(clients: ServiceClients) -> None:
    method = Flaky()
    assert await clients.call_idempotent("billing", method, "r", retry_for=5) == "answer to r"
    assert len(method.calls) == 1


async def test_unavailable_is_retried_with_growing_pauses(clients: ServiceClients) -> None:
    method = Flaky(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert await clients.call_idempotent("billing", method, "r", retry_for=5) == "answer to r"
    assert len(method.calls) == 3
    first, second = method.calls[1] - method.calls[0], method.calls[2] - method.calls[1]
    assert first >= FIRST_RETRY_DELAY_SECONDS
    assert second >= 2 * FIRST_RETRY_DELAY_SECONDS


async def test_other_errors_are_not_retried(clients: ServiceClients) -> None:
    method = Flaky(grpc.StatusCode.FAILED_PRECONDITION)
    with pytest.raises(ApiError) as caught:
        await clients.call_idempotent("billing", method, "r", retry_for=5)
    assert caught.value.status != 503
    assert len(method.calls) == 1


async def test_gives_up_when_the_window_ends(clients: ServiceClients) -> None:
    method = Flaky(*[grpc.StatusCode.UNAVAILABLE] * 50)
    with pytest.raises(ApiError) as caught:
        await clients.call_idempotent("billing", method, "r", retry_for=0.5)
    assert caught.value.status == 503
    # 0.1 s, then 0.2 s, then the window is over: the pauses fit about three attempts into 0.5 s.
    assert 2 <= len(method.calls) <= 4


async def test_no_window_means_one_attempt(clients: ServiceClients) -> None:
    method = Flaky(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(ApiError):
        await clients.call_idempotent("billing", method, "r", retry_for=0)
    assert len(method.calls) == 1
