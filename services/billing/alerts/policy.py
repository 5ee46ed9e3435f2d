"""When a failed delivery is tried again: exponential backoff with jitter, and when it stops (a dead letter)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 5.0
    max_seconds: float = 900.0

    def exhausted(self, attempts: int) -> bool:
        """After `attempts` failed attempts, is the delivery a dead letter?"""
        return attempts >= self.max_attempts

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """The wait after the `attempts`-th failure: base × 2^(attempts-1), capped at max, then a random half
        to all of it ("equal jitter"), so replicas and users that failed together do not retry together."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(max(attempts - 1, 0), 32))
        return ceiling * (0.5 + 0.5 * (rng or random).random())
