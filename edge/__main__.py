"""`python -m edge`: serve the REST API with uvicorn on PORT (default 3000)."""

from __future__ import annotations

import uvicorn

from common.logging import RedactingFilter, setup_logging
from edge.settings import EdgeSettings


def main() -> None:
    settings = EdgeSettings()
    setup_logging("edge", settings.log_level)
    config = uvicorn.Config(
        "edge.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    import logging

    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactingFilter())
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
