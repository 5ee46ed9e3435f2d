"""`python -m edge`: serve the REST API with uvicorn on PORT (default 3000): HTTPS when EDGE_TLS_CERT and
EDGE_TLS_KEY are set, plain HTTP otherwise."""

from __future__ import annotations

import logging

import uvicorn

from common.logging import RedactingFilter, logging_config, setup_logging
from common.service_auth import tokens_or_exit
from common.tls import tls_or_exit
from edge.settings import EdgeSettings


def main() -> None:
    settings = EdgeSettings()
    setup_logging("edge", settings.log_level, settings.log_format)
    tokens_or_exit(settings)  # fail here with one clear line, not inside each worker's start-up
    tls_or_exit(settings, "edge")  # likewise for the certificate the edge presents to the services
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
        # HTTPS when both are set (EdgeSettings refuses one without the other).
        ssl_certfile=None if settings.https_cert is None else str(settings.https_cert),
        ssl_keyfile=None if settings.https_key is None else str(settings.https_key),
    )


if __name__ == "__main__":
    main()
