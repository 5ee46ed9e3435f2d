"""The one retry policy for calls to Claude (the SDK's own retries are off, so this is the only one).

Retried: rate limits (429), overload (529), server errors (500/502/503/504), connection errors and
per-attempt timeouts. Not retried: other 4xx (the request itself is wrong) and output that fails validation
(the provider billed us for it, a retry would bill again for a likely identical miss, and the user can retry).

Waits honour the provider's `retry-after-ms` / `retry-after`; otherwise exponential backoff with jitter.
Everything fits a total time budget: each attempt's timeout is cut to the budget left, and a retry whose
wait would end past the budget is not made (the caller then passes the provider's retry-after on to the
user). The budget must stay below the edge's deadline for the whole call (EDGE_GENERATION_TIMEOUT_SECONDS),
which also covers saving the result, so the edge always hears our answer rather than its own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

log = logging.getLogger(__name__)


class Outcome(Protocol):
    """What an attempt reports; failures carry whether to retry and the provider's wait hint."""

    @property
    def ok(self) -> bool: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def error_type(self) -> str: ...


T = TypeVar("T", bound=Outcome)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    #: Total for all attempts and the waits between them.
    budget_seconds: float = 120.0
    #: Per attempt, further cut to what is left of the budget.
    attempt_timeout_seconds: float = 50.0
    #: Backoff when the provider gives no retry-after: base·2^(n-1) + up to `base` of jitter, at most max.
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0


class wait_retry_after_or(wait_base):
    """Wait what the failed attempt's `retry_after` says, else fall back to another wait strategy."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        hint = None if outcome is None or outcome.failed else outcome.result().retry_after
        return max(0.0, hint) if hint is not None else self.fallback(retry_state)


class stop_past_budget(stop_base):
    """Don't retry if the wait would end at or past the budget (so a long retry-after goes to the caller)."""

    def __init__(self, spent: Callable[[], float], budget: float) -> None:
        self.spent = spent
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.spent() + retry_state.upcoming_sleep >= self.budget


async def call_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[int, float], Awaitable[T]],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[T, int]:
    """Run `attempt(number, timeout)` (number 0 = first try) under `policy`; returns the last outcome and how
    many attempts were made. An exception from `attempt` is a bug, not a provider fault: it is not retried.
    `clock` and `sleep` are there so tests can run the policy on a fake clock."""
    started = clock()
    made = 0

    def spent() -> float:
        return clock() - started

    async def one() -> T:
        nonlocal made
        number, made = made, made + 1
        return await attempt(number, max(0.001, min(policy.attempt_timeout_seconds, policy.budget_seconds - spent())))

    # Most calls succeed at once: take the first attempt outside tenacity, whose retry loop costs about
    # 0.2 ms of CPU to set up (py-spy, c=64). A failed first outcome is handed to the loop as its first
    # attempt, so waits, budget and logging are exactly those of a loop that made it.
    first = await one()
    if first.ok:
        return first, made
    pending = [first]

    async def first_then_more() -> T:
        return pending.pop() if pending else await one()

    def before_sleep(state: RetryCallState) -> None:
        failed = state.outcome.result().error_type if state.outcome and not state.outcome.failed else "?"
        log.warning("claude attempt %d/%d failed (%s); retrying in %.2f s", state.attempt_number,
                    policy.max_attempts, failed, state.upcoming_sleep)

    def give_up(state: RetryCallState) -> T:
        assert state.outcome is not None
        result: T = state.outcome.result()
        log.warning("claude call failed (%s) after %d attempt(s) in %.2f s; not retrying", result.error_type,
                    state.attempt_number, spent())
        return result

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda r: not r.ok and r.retryable),
        stop=stop_any(stop_after_attempt(policy.max_attempts), stop_past_budget(spent, policy.budget_seconds)),
        wait=wait_retry_after_or(wait_exponential_jitter(
            multiplier=policy.base_delay_seconds, max=policy.max_delay_seconds, jitter=policy.base_delay_seconds)),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        sleep=sleep,
    )
    result: T = await retrying(first_then_more)
    return result, made
