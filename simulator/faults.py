"""Fault injection: the grammar shared by `SIM_FAULT` and the `x-sim-fault` request header.

A spec is a comma-separated list of items (usually one):

- ``rate_limit``   -> 429 ``rate_limit_error`` with ``retry-after: 1``
- ``server_error`` -> 500 ``api_error``
- ``overloaded``   -> 529 ``overloaded_error``
- ``slow:<ms>``    -> answer normally after sleeping ``<ms>`` milliseconds
- ``hang``         -> never answer (until the client disconnects)
- ``bad_schema``   -> a forced ``tool_use`` whose input violates the tool's schema; empty text otherwise
- ``none`` / empty -> no fault (lets a header switch off a start-up fault)

Items combine, e.g. ``slow:200,bad_schema``. Parsing is cached because benchmark traffic repeats the
same few header values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# fault name -> (HTTP status, error type, message); the messages mirror the real API's.
ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "Number of requests has exceeded your rate limit (simulated)."),
    "server_error": (500, "api_error", "Internal server error (simulated)."),
    "overloaded": (529, "overloaded_error", "Overloaded (simulated)."),
}


class FaultSpecError(ValueError):
    """The fault spec does not follow the grammar; surfaces as a 400 (header) or a start-up error."""


@dataclass(frozen=True, slots=True)
class Fault:
    """A parsed fault spec; the default instance means "behave normally"."""

    error: str | None = None  # a key of ERROR_FAULTS
    hang: bool = False
    slow_ms: int = 0
    bad_schema: bool = False

    @property
    def active(self) -> bool:
        return self.error is not None or self.hang or self.slow_ms > 0 or self.bad_schema


NO_FAULT = Fault()


@lru_cache(maxsize=256)
def parse_fault(spec: str) -> Fault:
    """Parse a fault spec (see module docstring); raises FaultSpecError on anything unknown."""
    error: str | None = None
    hang = bad_schema = False
    slow_ms = 0
    for raw in spec.split(","):
        item = raw.strip().lower()
        if item in ("", "none"):
            continue
        if item in ERROR_FAULTS:
            if error is not None and error != item:
                raise FaultSpecError(f"conflicting faults: {error!r} and {item!r}")
            error = item
        elif item == "hang":
            hang = True
        elif item == "bad_schema":
            bad_schema = True
        elif item.startswith("slow:"):
            value = item[len("slow:"):].strip()
            if not value.isdigit():
                raise FaultSpecError(f"slow fault needs a non-negative integer of milliseconds, got {raw.strip()!r}")
            slow_ms = int(value)
        else:
            raise FaultSpecError(
                f"unknown fault {raw.strip()!r}; expected one of rate_limit, server_error, overloaded, "
                "slow:<ms>, hang, bad_schema, none"
            )
    if error is None and not hang and not slow_ms and not bad_schema:
        return NO_FAULT
    return Fault(error=error, hang=hang, slow_ms=slow_ms, bad_schema=bad_schema)
