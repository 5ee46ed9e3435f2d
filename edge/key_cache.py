"""A short-lived cache of validated API keys, keyed by the key's SHA-256 (never the key itself).

Off by default (`EDGE_KEY_CACHE_SECONDS=0`): every request asks auth, so a rotated or disabled key
stops working at once. With a TTL it saves one auth round trip per request at the cost of that much
staleness; `evict_user` drops a user's entries when the edge itself rotates or disables them.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any


class KeyCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, Any]] = {}

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str) -> Any | None:
        if self.ttl <= 0:
            return None
        digest = self._digest(key)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[self._digest(key)] = (time.monotonic() + self.ttl, value)

    def evict_user(self, user_id: int) -> None:
        for digest, (_, value) in list(self._entries.items()):
            if getattr(value, "id", None) == user_id:
                self._entries.pop(digest, None)
