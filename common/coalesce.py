"""Natural batching: calls that arrive while a batch is in flight leave together in the next one.

Nothing ever waits on a timer. An idle coalescer sends a call at once (as a batch of one, on the next turn
of the event loop, so calls made in the same turn join it); while a batch is in flight, the calls that
arrive meanwhile queue up and leave together as soon as it ends. Under load one round trip then carries
many calls (TigerBeetle batches its transfers the same way); at concurrency 1 a call costs what it cost
alone. The batch size follows the load by itself: the slower a round trip, the more calls it carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Sends one batch; answers one result per item, in order: a value, or the exception that item raises.
SendBatch = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    def __init__(self, send: SendBatch[T, R], *, max_batch: int = 64, max_in_flight: int = 1) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Batches sent and items carried, for tests and metrics.
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """The item's result, or its exception. A caller that is cancelled while queued is left out of
        the batch; once sent, its item runs to completion and the answer is dropped."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._queue and not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._in_flight >= self._max_in_flight:
            return
        batch = [(item, future) for item, future in self._queue[: self._max_batch] if not future.done()]
        del self._queue[: self._max_batch]
        if not batch:
            self._schedule()
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        results: Sequence[R | BaseException]
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} was answered with {len(results)} results")
        except asyncio.CancelledError:  # shutting down: nobody gets an answer
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the whole batch failed: every item fails the same way
            results = [exc] * len(batch)
        finally:
            self._in_flight -= 1
            self.batches += 1
            self.items += len(batch)
            self._schedule()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
