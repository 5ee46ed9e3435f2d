"""Each HTTP request's id, bound for everything logged while it is served, and one access-log line per
request; a pure ASGI middleware (no BaseHTTPMiddleware: that wraps every response in a stream and costs far
more than the line itself).

The id is minted here, `req_` + 32 hex, and bound (`common.request_id`) before the app runs, so the metered
pipeline uses it for its hold and usage row, every gRPC call sends it to the services, and every log line
of every process about this request names it. An incoming `X-Request-ID` is not adopted: the id lands in
usage rows and is what support looks a call up by, so a caller may not choose it (or reuse another's).
Every response carries it in `X-Request-ID` (a replayed call's answer names the first attempt's id, which
the app sets itself; that header wins).

The line says `METHOD path status duration req=<id> user=<id|->`. It never carries the query string (where
`?api_key=` lives) nor any header, and the path is logged through the redacting handler like any record,
so a key pasted into a URL is still cut down to its prefix. The path is also escaped and cut here
(`printable`), so the line stays one line even where a record skips that handler (a test's log capture).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import request_id as context
from common.logging import printable

log = logging.getLogger("edge.access")

REQUEST_ID_HEADER = b"x-request-id"


class AccessLogMiddleware:
    """Binds the request id for every request; writes the access line when `log_requests` (EDGE_ACCESS_LOG)."""

    def __init__(self, app: ASGIApp, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500  # what the server answers if the app raises before responding
        request_id = minted = f"req_{uuid.uuid4().hex}"
        bound = context.request_id.set(minted)
        caller_bound = context.user_id.set(None)

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
                    message["headers"] = [*headers, (REQUEST_ID_HEADER, minted.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.log_requests and log.isEnabledFor(logging.INFO):
                caller = state.get("caller")
                log.info(
                    "%s %s %d %.1fms req=%s user=%s", scope["method"], printable(scope["path"]), status,
                    (time.perf_counter() - started) * 1000, request_id, getattr(caller, "id", "-"),
                )
            context.user_id.reset(caller_bound)
            context.request_id.reset(bound)
