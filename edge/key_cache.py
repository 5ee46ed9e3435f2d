"""A cache of validated API keys that is only trusted while revocations are being pushed to it.

Keyed by the key's SHA-256 (the key itself is never kept). The auth service streams the id of every user
whose key stops working (rotation, disabling — from any writer, via PostgreSQL NOTIFY); each one evicts
that user's entries at once. While the stream is not live (start-up, auth restarting, database away) the
cache is bypassed and every request asks auth, so a revoked key never works "for a while". A generation
counter closes the race where a validation answered before a revocation lands after it.
The TTL only bounds memory and staleness of non-security data (username).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import grpc

from protos import auth_pb2

log = logging.getLogger(__name__)


class KeyCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.live = False
        self.generation = 0
        self._entries: dict[bytes, tuple[float, Any]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.live

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str) -> Any | None:
        if not self.enabled:
            return None
        digest = self._digest(key)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, key: str, value: Any, generation: int) -> None:
        """Store a validation that started at `generation`; dropped if any revocation arrived since."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[self._digest(key)] = (time.monotonic() + self.ttl, value)

    def evict_user(self, user_id: int) -> None:
        self.generation += 1
        for digest, (_, value) in list(self._entries.items()):
            if getattr(value, "id", None) == user_id:
                self._entries.pop(digest, None)

    def go_dark(self) -> None:
        """Stop trusting the cache (the revocation stream is down)."""
        self.live = False
        self.generation += 1
        self._entries.clear()


async def follow_revocations(cache: KeyCache, auth: Any) -> None:
    """Keep the revocation stream open; the cache is live only while it is."""
    if cache.ttl <= 0:
        return
    while True:
        try:
            stream = auth.WatchRevocations(auth_pb2.WatchRevocationsRequest())
            async for revocation in stream:
                if revocation.user_id == 0:
                    cache.live = True
                else:
                    cache.evict_user(revocation.user_id)
        except asyncio.CancelledError:
            cache.go_dark()
            raise
        except grpc.aio.AioRpcError as exc:
            log.debug("revocation stream ended: %s", exc.code().name)
        cache.go_dark()
        await asyncio.sleep(0.5)
