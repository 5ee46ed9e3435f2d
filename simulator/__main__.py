"""`python -m simulator`: serve the simulated Messages API with uvicorn, announcing loudly that it is fake."""

from __future__ import annotations

import importlib.util
import os
import sys

import uvicorn

from common.logging import setup_logging
from simulator.app import create_app
from simulator.settings import SimulatorSettings

SHUTDOWN_GRACE_S = 3  # `hang` requests never finish on their own; don't let them block Ctrl-C


def banner(settings: SimulatorSettings) -> str:
    """The start-up line; loud so nobody mistakes simulated output for a real model's."""
    return (
        f"*** SIMULATED CLAUDE: Anthropic Messages API simulator on http://{settings.host}:{settings.port}"
        " — no real model is called ***"
    )


def main() -> None:
    settings = SimulatorSettings()
    # The same schema and redaction as the services' lines (README, "Logging"); the banners stay plain.
    setup_logging("simulator", settings.log_level, os.environ.get("LOG_FORMAT", "json"))
    print(banner(settings), file=sys.stderr, flush=True)
    if settings.fault:
        print(f"*** SIMULATED CLAUDE: start-up fault {settings.fault!r} applies to every request ***",
              file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


if __name__ == "__main__":
    main()
