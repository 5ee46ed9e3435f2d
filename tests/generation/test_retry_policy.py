"""The retry policy on its own, on a fake clock, so every wait and attempt timeout is exact: which outcomes
are retried, how long it waits (retry-after, else backoff), and that it never plans past its budget. The
whole-stack behaviour against the simulator is in test_provider_retries.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.generation.claude import retry_after_hint
from services.generation.retry import RetryPolicy, call_with_retries


@dataclass
class Reply:
    ok: bool = False
    retryable: bool = True
    retry_after: float | None = None
    error_type: str = "rate_limited"


class FakeTime:
    """A clock that only moves when the policy sleeps or a fake attempt "takes" time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Provider:
    """Answers from a script of replies (the last one repeats); a reply "takes" `duration` seconds, or the
    whole attempt timeout when `hang` is set. Records (attempt number, start time, timeout) of each try."""

    def __init__(self, time: FakeTime, replies: list[Reply], *, duration: float = 0.0, hang: bool = False) -> None:
        self.time, self.replies, self.duration, self.hang = time, replies, duration, hang
        self.calls: list[tuple[int, float, float]] = []

    async def __call__(self, number: int, timeout: float) -> Reply:
        self.calls.append((number, self.time.now, timeout))
        self.time.now += timeout if self.hang else self.duration
        return self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]


def policy(**overrides: float) -> RetryPolicy:
    values = {"max_attempts": 4, "budget_seconds": 60.0, "attempt_timeout_seconds": 10.0,
              "base_delay_seconds": 0.5, "max_delay_seconds": 3.0, **overrides}
    return RetryPolicy(**values)  # type: ignore[arg-type]


async def run(chosen: RetryPolicy, provider: Provider) -> tuple[Reply, int]:
    return await call_with_retries(chosen, provider, clock=provider.time.clock, sleep=provider.time.sleep)


async def test_stops_at_max_attempts_and_returns_the_last_failure() -> None:
    time = FakeTime()
    last = Reply(retry_after=0.25, error_type="overloaded")
    provider = Provider(time, [Reply(retry_after=0.25)] * 3 + [last])
    reply, attempts = await run(policy(max_attempts=4), provider)
    assert attempts == 4 and reply is last
    assert [number for number, _, _ in provider.calls] == [0, 1, 2, 3]


async def test_honours_retry_after() -> None:
    time = FakeTime()
    provider = Provider(time, [Reply(retry_after=7.0), Reply(retry_after=2.5), Reply(ok=True)])
    reply, attempts = await run(policy(), provider)
    assert reply.ok and attempts == 3
    assert time.sleeps == [7.0, 2.5]  # exactly the provider's hints, not the (shorter) backoff


async def test_backoff_with_jitter_without_retry_after() -> None:
    time = FakeTime()
    provider = Provider(time, [Reply(retry_after=None)] * 4)
    await run(policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=1.5), provider)
    assert len(time.sleeps) == 3
    for n, slept in enumerate(time.sleeps):
        floor = 0.5 * 2**n
        assert min(floor, 1.5) <= slept <= min(floor + 0.5, 1.5), time.sleeps


async def test_retry_after_past_the_budget_stops_at_once() -> None:
    time = FakeTime()
    hint = Reply(retry_after=30.0)
    provider = Provider(time, [hint, Reply(ok=True)], duration=1.0)
    reply, attempts = await run(policy(budget_seconds=20.0), provider)
    assert attempts == 1 and reply is hint and time.sleeps == []  # the caller gets the 30 s hint to pass on


async def test_attempt_timeouts_are_cut_to_the_budget() -> None:
    """Hanging attempts: each gets the per-attempt timeout, the last only what is left, then it stops even
    though max_attempts would allow more."""
    time = FakeTime()
    provider = Provider(time, [Reply(error_type="timeout")], hang=True)
    reply, attempts = await run(policy(max_attempts=6, budget_seconds=25.0, attempt_timeout_seconds=10.0,
                                       base_delay_seconds=0.0, max_delay_seconds=0.0), provider)
    assert reply.error_type == "timeout" and attempts == 3
    assert [(start, timeout) for _, start, timeout in provider.calls] == [(0.0, 10.0), (10.0, 10.0), (20.0, 5.0)]
    assert time.now == 25.0  # ended exactly at the budget


@pytest.mark.parametrize("reply", [Reply(retryable=False, error_type="upstream_error"), Reply(ok=True)])
async def test_final_outcomes_are_not_retried(reply: Reply) -> None:
    time = FakeTime()
    provider = Provider(time, [reply, Reply(ok=True)])
    got, attempts = await run(policy(), provider)
    assert got is reply and attempts == 1 and time.sleeps == []


async def test_an_exception_is_a_bug_and_not_retried() -> None:
    calls = 0

    async def broken(number: int, timeout: float) -> Reply:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await call_with_retries(policy(), broken, sleep=FakeTime().sleep)
    assert calls == 1


def test_retry_after_hint_parsing() -> None:
    assert retry_after_hint({"retry-after": "3"}) == 3.0
    assert retry_after_hint({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5  # the precise one wins
    assert retry_after_hint({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    assert retry_after_hint({"retry-after": "-4"}) == 0.0
    assert retry_after_hint({}) is None and retry_after_hint({"retry-after": "soon"}) is None
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    hint = retry_after_hint({"retry-after": in_a_minute})
    assert hint is not None and 50 <= hint <= 61
