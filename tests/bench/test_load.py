"""The load generator's arithmetic (bench/load.py): percentiles and rounds added up into one result."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench import load


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile(values, 100) == 100.0
    assert load.percentile([7.0], 50) == 7.0
    assert math.isnan(load.percentile([], 50))


def test_combine_adds_rounds_up() -> None:
    first = load.RunResult(requests=3, concurrency=2, elapsed_s=1.0, latencies_ms=[1.0, 2.0],
                           errors=Counter({"HTTP 500": 1}))
    second = load.RunResult(requests=4, concurrency=2, elapsed_s=3.0, latencies_ms=[3.0, 4.0, 5.0, 6.0])
    both = load.combine([first, second])
    assert (both.requests, both.concurrency, both.elapsed_s) == (7, 2, 4.0)
    assert both.ok == 6 and both.errors == Counter({"HTTP 500": 1})
    assert both.throughput == pytest.approx(6 / 4.0)  # successes over the rounds' wall time, not a mean of rates
    assert both.percentile(50) == 3.0
    assert first.latencies_ms == [1.0, 2.0]  # the rounds themselves are left as they were


async def test_run_sends_each_index_once() -> None:
    seen: list[int] = []

    async def call(index: int) -> str | None:
        seen.append(index)
        return "odd" if index % 2 else None

    result = await load.run(call, requests=10, concurrency=3, first_index=5)
    assert sorted(seen) == list(range(5, 15))
    assert result.ok == 5 and result.errors == Counter({"odd": 5})
