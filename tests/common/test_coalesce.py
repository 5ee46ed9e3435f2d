"""common.coalesce: natural batching, in-process (no servers needed)."""

from __future__ import annotations

import asyncio

import pytest

from common.coalesce import Coalescer


class Recorder:
    """A batch sender that records each batch and waits for the test to release it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_an_idle_coalescer_sends_a_call_alone_at_once() -> None:
    recorder = Recorder()
    recorder.gate.set()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    assert await coalescer.submit(2) == 20
    assert recorder.batches == [[2]]


async def test_calls_arriving_while_a_batch_is_in_flight_leave_together() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send, max_batch=3)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0.01)  # the first batch is in flight (held at the gate)
    rest = [asyncio.create_task(coalescer.submit(i)) for i in (2, 4, 6, 8)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[0]]  # nothing else leaves while one batch is in flight
    recorder.gate.set()
    assert await first == 0
    assert [await t for t in rest] == [20, 40, 60, 80]
    assert recorder.batches == [[0], [2, 4, 6], [8]]  # at most max_batch per batch, in arrival order
    assert (coalescer.batches, coalescer.items) == (3, 5)


async def test_each_item_gets_its_own_result_or_error() -> None:
    recorder = Recorder()
    recorder.gate.set()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "odd 3"
    assert recorder.batches == [[0, 1, 2, 3]]  # submitted in one turn of the loop: one batch


async def test_a_failed_batch_fails_each_of_its_calls_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def send(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("down")
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(send)
    failed = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await coalescer.submit(3) == 3


async def test_a_wrong_number_of_results_is_an_error_not_a_mismatch() -> None:
    async def send(items: list[int]) -> list[int | BaseException]:
        return [1]

    coalescer: Coalescer[int, int] = Coalescer(send)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_caller_cancelled_while_queued_is_left_out_of_the_batch() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(coalescer.submit(i)) for i in (2, 4)]
    await asyncio.sleep(0.01)
    queued[0].cancel()
    recorder.gate.set()
    assert await first == 0 and await queued[1] == 40
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    assert recorder.batches == [[0], [4]]


def test_limits_must_be_positive() -> None:
    async def send(items: list[int]) -> list[int | BaseException]:
        return list(items)

    with pytest.raises(ValueError):
        Coalescer(send, max_batch=0)
