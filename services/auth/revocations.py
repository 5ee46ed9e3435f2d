"""Fans key revocations out to every `WatchRevocations` stream.

Revocations are announced with PostgreSQL NOTIFY in the same transaction that rotates or disables a key,
so they cover every writer (this server, `fsg-auth` on the command line, another auth replica). One
dedicated connection LISTENs; if it drops, every open stream is ended, so subscribers stop trusting
their caches until they resubscribe and see the stream live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from services.auth.queries import REVOCATION_CHANNEL

log = logging.getLogger(__name__)

#: Sentinel pushed to end every stream when the listener is lost.
CLOSED = -1


class RevocationHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subscribers: set[asyncio.Queue[int]] = set()
        self._live = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[int]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every stream now (the server is draining)."""
        self._live.clear()
        self._publish(CLOSED)

    async def wait_live(self) -> None:
        await self._live.wait()

    def _publish(self, user_id: int) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(user_id)
            except asyncio.QueueFull:  # a stuck subscriber: end its stream rather than drop a revocation
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(CLOSED)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._publish(int(payload))
        except ValueError:
            log.warning("ignoring malformed revocation payload")

    async def run(self) -> None:
        """Keep one LISTEN connection up; end all streams whenever it is lost."""
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())  # type: ignore[misc]
                await conn.add_listener(REVOCATION_CHANNEL, self._on_notify)
                self._live.set()
                try:
                    while not lost.is_set() and not conn.is_closed():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(lost.wait(), 5)
                        if not lost.is_set():
                            await conn.execute("SELECT 1")  # notices a silently dead connection
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again shortly
                log.warning("revocation listener lost (%s); streams closed", type(exc).__name__)
            self._live.clear()
            self._publish(CLOSED)
            await asyncio.sleep(1)
