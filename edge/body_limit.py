"""Refuse request bodies larger than `EDGE_MAX_BODY_BYTES` with 413, before anything is parsed or called.

A pure ASGI middleware (Starlette's `BaseHTTPMiddleware` costs a task and a stream per request, and this
runs on every request): a declared `Content-Length` over the limit is answered at once, without running
the route or checking the key; a body sent without one (chunked) is counted as it is read and reading
stops at the limit by raising `BodyTooLarge`, which FastAPI's body reader passes on (it is an
`HTTPException`) to the error handler. A path may have a limit of its own (the bulk import's CSV upload).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.errors import BodyTooLarge


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes) if self.per_path else self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await BodyTooLarge(limit).response()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
