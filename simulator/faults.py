"""Fault injection: the grammar shared by `SIM_FAULT` and the `x-sim-fault` request header.

A spec is a comma-separated list of items (usually one):

- ``rate_limit``   -> 429 ``rate_limit_error`` with ``retry-after: 1``
- ``server_error`` -> 500 ``api_error``
- ``overloaded``   -> 529 ``overloaded_error``
- ``slow:<ms>``    -> answer normally after sleeping ``<ms>`` milliseconds
- ``hang``         -> never answer (until the client disconnects)
- ``bad_schema``   -> a forced ``tool_use`` whose input violates the tool's schema; empty text otherwise
- ``input_tokens:<n>`` -> answer normally, but report ``<n>`` input tokens in ``usage`` (a bill above what the
  request could cost: how a caller's worst-case bound is tested)
- ``none`` / empty -> no fault (lets a header switch off a start-up fault)

Modifiers, so a client's retries can be tested deterministically:

- ``<item>*<K>`` (K >= 1, any item above but ``none``) -> the item applies only while the request's attempt
  number is below K, e.g. ``rate_limit*2`` fails the first two attempts and lets the third through. The attempt
  number is the ``x-stainless-retry-count`` request header (0 = first try; the SDK sends it, and a client with
  its own retry loop sets it); without it every request counts as a first try.
- ``retry_after:<s>``      -> the error answer carries ``retry-after: <s>`` (whole seconds) instead of the default
- ``retry_after_ms:<ms>``  -> the error answer carries ``retry-after-ms: <ms>`` (and ``retry-after`` rounded up)
- ``tag:<token>``          -> no behaviour; each request with this tag is recorded with its attempt number and
  arrival time, listed by ``GET /_sim/attempts?tag=<token>`` (so a test can see how far apart retries came)

Items combine, e.g. ``slow:200,bad_schema`` or ``overloaded*2,retry_after:1,tag:t1``. Parsing is cached because
benchmark traffic repeats the same few header values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache

# fault name -> (HTTP status, error type, message); the messages mirror the real API's.
ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "Number of requests has exceeded your rate limit (simulated)."),
    "server_error": (500, "api_error", "Internal server error (simulated)."),
    "overloaded": (529, "overloaded_error", "Overloaded (simulated)."),
}
#: The request header that numbers a logical request's attempts (0 = first).
ATTEMPT_HEADER = "x-stainless-retry-count"
DEFAULT_RATE_LIMIT_RETRY_AFTER = "1"

_TAG = re.compile(r"[a-z0-9_.-]{1,64}")
_KNOWN = ("rate_limit, server_error, overloaded, slow:<ms>, hang, bad_schema, input_tokens:<n>, none, <item>*<K>, "
          "retry_after:<s>, retry_after_ms:<ms>, tag:<token>")


class FaultSpecError(ValueError):
    """The fault spec does not follow the grammar; surfaces as a 400 (header) or a start-up error."""


@dataclass(frozen=True, slots=True)
class Fault:
    """A parsed fault spec; the default instance means "behave normally"."""

    error: str | None = None  # a key of ERROR_FAULTS
    hang: bool = False
    slow_ms: int = 0
    bad_schema: bool = False
    #: (component, K): the component ("error", "hang", "slow", "bad_schema") applies only to attempts < K.
    limits: tuple[tuple[str, int], ...] = ()
    retry_after: str | None = None
    retry_after_ms: str | None = None
    tag: str | None = None
    input_tokens: int | None = None

    @property
    def active(self) -> bool:
        return (self.error is not None or self.hang or self.slow_ms > 0 or self.bad_schema
                or self.tag is not None or self.input_tokens is not None)

    def for_attempt(self, attempt: int) -> Fault:
        """The fault as it applies to the given attempt number (items limited by `*K` drop out at K)."""
        if not self.limits:
            return self
        drop = {name for name, k in self.limits if attempt >= k}
        if not drop:
            return self
        return replace(
            self,
            error=None if "error" in drop else self.error,
            hang=self.hang and "hang" not in drop,
            slow_ms=0 if "slow" in drop else self.slow_ms,
            bad_schema=self.bad_schema and "bad_schema" not in drop,
            limits=(),
        )

    def error_headers(self, status: int) -> dict[str, str]:
        """Retry hints sent with an error answer: the real API sends `retry-after` with its 429s."""
        headers: dict[str, str] = {}
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = self.retry_after_ms
            headers["retry-after"] = str(math.ceil(int(self.retry_after_ms) / 1000))
        if self.retry_after is not None:
            headers["retry-after"] = self.retry_after
        elif status == 429 and "retry-after" not in headers:
            headers["retry-after"] = DEFAULT_RATE_LIMIT_RETRY_AFTER
        return headers


NO_FAULT = Fault()


def _non_negative_int(raw: str, value: str, what: str) -> int:
    if not value.isdigit():
        raise FaultSpecError(f"{what} needs a non-negative integer, got {raw!r}")
    return int(value)


@lru_cache(maxsize=256)
def parse_fault(spec: str) -> Fault:
    """Parse a fault spec (see module docstring); raises FaultSpecError on anything unknown."""
    error: str | None = None
    hang = bad_schema = False
    slow_ms = 0
    limits: dict[str, int] = {}
    retry_after: str | None = None
    retry_after_ms: str | None = None
    tag: str | None = None
    input_tokens: int | None = None
    for raw_item in spec.split(","):
        raw = raw_item.strip()
        item = raw.lower()
        if item in ("", "none"):
            continue
        limit: int | None = None
        if "*" in item:
            item, _, count = item.rpartition("*")
            item = item.strip()
            limit = _non_negative_int(raw, count.strip(), "an attempt limit (*K)")
            if limit < 1:
                raise FaultSpecError(f"an attempt limit (*K) must be at least 1, got {raw!r}")
        if item in ERROR_FAULTS:
            if error is not None and error != item:
                raise FaultSpecError(f"conflicting faults: {error!r} and {item!r}")
            error, component = item, "error"
        elif item == "hang":
            hang, component = True, "hang"
        elif item == "bad_schema":
            bad_schema, component = True, "bad_schema"
        elif item.startswith("slow:"):
            slow_ms, component = _non_negative_int(raw, item[len("slow:"):].strip(), "slow fault"), "slow"
        elif limit is None and item.startswith("retry_after:"):
            retry_after, component = str(_non_negative_int(raw, item[len("retry_after:"):].strip(), "retry_after")), ""
        elif limit is None and item.startswith("retry_after_ms:"):
            value = item[len("retry_after_ms:"):].strip()
            retry_after_ms, component = str(_non_negative_int(raw, value, "retry_after_ms")), ""
        elif limit is None and item.startswith("input_tokens:"):
            value = item[len("input_tokens:"):].strip()
            input_tokens, component = _non_negative_int(raw, value, "input_tokens"), ""
        elif limit is None and item.startswith("tag:"):
            tag, component = item[len("tag:"):].strip(), ""
            if not _TAG.fullmatch(tag):
                raise FaultSpecError(f"a tag is 1-64 of [a-z0-9_.-], got {raw!r}")
        else:
            raise FaultSpecError(f"unknown fault {raw!r}; expected one of {_KNOWN}")
        if limit is not None:
            limits[component] = limit
    if error is None and not hang and not slow_ms and not bad_schema and tag is None and input_tokens is None:
        return NO_FAULT
    return Fault(error=error, hang=hang, slow_ms=slow_ms, bad_schema=bad_schema,
                 limits=tuple(sorted(limits.items())), retry_after=retry_after, retry_after_ms=retry_after_ms,
                 tag=tag, input_tokens=input_tokens)
