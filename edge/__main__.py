"""`python -m edge`: serve the REST API with uvicorn on PORT (default 3000)."""

from __future__ import annotations

import logging

import uvicorn

from common.logging import RedactingFilter, logging_config, setup_logging
from common.service_auth import tokens_or_exit
from edge.settings import EdgeSettings


def main() -> None:
    settings = EdgeSettings()
    setup_logging("edge", settings.log_level, settings.log_format)
    tokens_or_exit(settings)  # fail here with one clear line, not inside each worker's start-up
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactingFilter())
    # uvicorn.run (not Server.run) so EDGE_WORKERS > 1 really starts worker processes; each worker keeps
    # its own channels, key cache and revocation stream.
    uvicorn.run(
        "edge.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # Applied again in each worker process EDGE_WORKERS spawns (they inherit no logging set up here).
        log_config=logging_config("edge", settings.log_level, settings.log_format),
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_seconds,
    )


if __name__ == "__main__":
    main()
