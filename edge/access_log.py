"""One access-log line per HTTP request, as a pure ASGI middleware (no BaseHTTPMiddleware: that wraps
every response in a stream and costs far more than the line itself).

The line says `METHOD path status duration req=<id> user=<id|->`. It never carries the query string (where
`?api_key=` lives) nor any header, and the path is logged through the redacting handler like any record,
so a key pasted into a URL is still cut down to its prefix. The path is also escaped and cut here
(`printable`), so the line stays one line even where a record skips that handler (a test's log capture).
Every response gets an `X-Request-ID` (the metered pipeline's own id when it set one, so the log line, the
response and the usage row agree).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import printable

log = logging.getLogger("edge.access")

REQUEST_ID_HEADER = b"x-request-id"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500  # what the server answers if the app raises before responding
        request_id = ""

        async def send_with_id(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                for name, value in headers:
                    if name.lower() == REQUEST_ID_HEADER:
                        request_id = value.decode("latin-1")
                        break
                else:
                    request_id = f"req_{uuid.uuid4().hex}"
                    message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                caller = state.get("caller")
                log.info(
                    "%s %s %d %.1fms req=%s user=%s", scope["method"], printable(scope["path"]), status,
                    (time.perf_counter() - started) * 1000, request_id or "-", getattr(caller, "id", "-"),
                )
