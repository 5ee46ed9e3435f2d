"""A closed-loop load generator: `concurrency` workers share one request counter, each sends its next
request as soon as the previous one answered. Latency is per request; throughput is requests / wall time."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: One call: given the request index, return None on success or a short error label.
Call = Callable[[int], Awaitable[str | None]]


@dataclass
class RunResult:
    requests: int
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)  # successful requests only
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(sum(lat) / len(lat), 2) if lat else math.nan,
            "max_ms": round(max(lat), 2) if lat else math.nan,
        }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def run(call: Call, requests: int, concurrency: int, first_index: int = 0) -> RunResult:
    """Send `requests` calls (indices first_index..first_index+requests-1) with `concurrency` in flight."""
    result = RunResult(requests=requests, concurrency=concurrency, elapsed_s=0.0)
    next_index = first_index
    end = first_index + requests

    async def worker() -> None:
        nonlocal next_index
        while next_index < end:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                error = await call(index)
            except Exception as exc:  # a transport failure is an error, not a crash of the run
                error = type(exc).__name__
            if error is None:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.errors[error] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    result.elapsed_s = time.perf_counter() - started
    return result


def combine(results: list[RunResult]) -> RunResult:
    """Several runs at one concurrency as one: their requests, latencies, errors and wall times added."""
    combined = RunResult(requests=0, concurrency=results[0].concurrency, elapsed_s=0.0)
    for result in results:
        combined.requests += result.requests
        combined.elapsed_s += result.elapsed_s
        combined.latencies_ms += result.latencies_ms
        combined.errors.update(result.errors)
    return combined
