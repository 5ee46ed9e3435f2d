"""`python -m bench.log_cost`: CPU per log line on the edge's hot path (the one access line a request writes
at INFO), through the shared renderer in both formats and through a plain stdlib `Formatter` with the same
redacting filter (what every process used before the shared schema), and the CPU the request-id channel
wrapper adds to each gRPC call. In-process, written to /dev/null; the best of five runs."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from common import request_id as context
from common.logging import RedactingFilter, setup_logging

LINES = 50_000
CALLS = 200_000


def _plain(service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)


def per_line(setup: Callable[[], None]) -> float:
    """Microseconds of CPU per access line (as edge.access_log writes it) after `setup`."""
    setup()
    log = logging.getLogger("edge.access")
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(LINES):
            log.info("%s %s %d %.1fms req=%s user=%s", "POST", "/api/generate-scene/p/setup", 200, 12.3456,
                     "req_" + "a" * 32, 7)
        best = min(best, (time.process_time() - started) / LINES * 1e6)
    return best


async def _calls(method: Any) -> float:
    started = time.process_time()
    for _ in range(CALLS):
        await method(b"", metadata=(("authorization", "Bearer x"),))
    return (time.process_time() - started) / CALLS * 1e6


def per_call() -> tuple[float, float]:
    """Microseconds of CPU per call of a bare async multicallable, and of the same through the wrapper."""
    async def bare(request: bytes, metadata: Any = None) -> Any:
        return metadata

    wrapped = context._WithRequestId(bare)
    return min(asyncio.run(_calls(bare)) for _ in range(3)), min(asyncio.run(_calls(wrapped)) for _ in range(3))


def main() -> None:
    out = sys.stdout
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the whole run's log sink
    context.request_id.set("req_" + "a" * 32)
    context.user_id.set(7)
    results = {
        "plain stdlib Formatter + RedactingFilter": per_line(lambda: _plain("edge")),
        "LOG_FORMAT=json": per_line(lambda: setup_logging("edge", "INFO", "json")),
        "LOG_FORMAT=console": per_line(lambda: setup_logging("edge", "INFO", "console")),
    }
    for name, micros in results.items():
        print(f"access line, {name}: {micros:.1f} µs CPU", file=out)
    bare, wrapped = per_call()
    print(f"gRPC call through request_id_channel: +{wrapped - bare:.2f} µs CPU ({bare:.2f} → {wrapped:.2f})", file=out)


if __name__ == "__main__":
    main()
