"""The request id (and caller) a log line is about, and how they travel.

The edge binds them per HTTP request (`edge.access_log`, and `edge.security` once the key is checked);
every gRPC call made meanwhile sends them as metadata `x-request-id` and `x-user-id` (`request_id_channel`),
and each service binds them for the RPC it serves (`RequestIdInterceptor`), so every line any process logs
about the request carries the same `request_id` and `user_id` (common/logging.py adds them). A batch RPC
carries many requests: it sends neither, and the service binds each item's own from the payload while that
item runs (`each_with_id`). Both are for logs only: no service decides anything by them.

Plain `ContextVar`s, not structlog's `bind_contextvars`: a lookup per log line and one `set` per request or
RPC is all this costs, and asyncio gives every request (uvicorn) and every RPC (grpc.aio) its own task,
so a value never leaks into another request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc

from common.grpc_channel import WrappedChannel

T = TypeVar("T")

#: At DEBUG, one line per RPC served (`/pkg.Service/Method ok 1.2ms`) and one per batch item, each under its
#: request id (event `grpc.calls`); at INFO and above a call costs one level check, no wrapping.
log = logging.getLogger("grpc.calls")

METADATA_KEY = "x-request-id"
USER_METADATA_KEY = "x-user-id"
#: What a request id may look like when it arrives from elsewhere (gRPC metadata, an HTTP header): the
#: edge's own are `req_` + 32 hex. Anything else is dropped rather than logged as an id.
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id: ContextVar[int | str | None] = ContextVar("user_id", default=None)


def well_formed(value: object) -> str | None:
    """`value` if it may serve as a request id, else None."""
    return value if isinstance(value, str) and WELL_FORMED.fullmatch(value) else None


# -- client side: every call of a channel sends the bound id -------------------------------------------

class _WithRequestId:
    """A multicallable that adds `x-request-id` to a call's metadata when a request id is bound."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        current = request_id.get()
        if current is not None:
            caller = user_id.get()
            ours = ((METADATA_KEY, current),) if caller is None else (
                (METADATA_KEY, current), (USER_METADATA_KEY, str(caller)))
            metadata = (*tuple(metadata), *ours) if metadata else ours
        return self._inner(*args, metadata=metadata, **kwargs)


def request_id_channel(inner: grpc.aio.Channel) -> grpc.aio.Channel:
    """A channel whose every call (so every stub built on it) sends the request id bound at that moment
    (`common.grpc_channel` says why a wrapper and not an interceptor)."""
    return WrappedChannel(inner, _WithRequestId)


# -- server side: the RPC's task carries the caller's id -----------------------------------------------

def _from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> tuple[str | None, int | None]:
    """The well-formed request id and user id in `metadata` (None for either that is absent or malformed)."""
    found, caller = None, None
    for key, value in metadata or ():
        if key == METADATA_KEY:
            found = well_formed(value)
        elif key == USER_METADATA_KEY:
            caller = _user(value)
    return found, caller


def _user(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) <= 19 else None


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """Binds the caller's `x-request-id` (when well formed) for the RPC about to run.

    grpc.aio runs each RPC in a task of its own and awaits the interceptors in that task before the handler,
    so setting the context variable here is seen by the handler and by nothing else; no handler wrapping
    (another coroutine per call) is needed. An RPC without the header gets None: a task may have inherited
    nothing else, but setting it keeps that true whatever grpc does.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        found, caller = _from_metadata(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        request_id.set(found)
        user_id.set(caller)
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not log.isEnabledFor(logging.DEBUG):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _logged(handler.unary_unary, handler_call_details.method),  # type: ignore[attr-defined]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _logged(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
            ) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started, outcome = time.perf_counter(), "error"
        try:
            reply = await inner(request, context)
            outcome = "ok"
            return reply
        finally:
            log.debug("%s %s %.1fms", method, outcome, (time.perf_counter() - started) * 1000)

    return handler


async def _with_id(value: str, caller: int | None, call: Awaitable[T], method: str) -> T:
    request_id.set(well_formed(value))
    user_id.set(caller or None)
    if not log.isEnabledFor(logging.DEBUG):
        return await call
    started, outcome = time.perf_counter(), "error"
    try:
        reply = await call
        outcome = "ok"
        return reply
    finally:
        log.debug("%s (batch item) %s %.1fms", method, outcome, (time.perf_counter() - started) * 1000)


def each_with_id(items: Iterable[Any], call: Callable[[Any], Awaitable[T]], id_of: Callable[[Any], str],
                 method: str) -> list[Awaitable[T]]:
    """A batch RPC's item calls, each run with its own request id (read from the item by `id_of`) and user
    (the item's `user_id` field) bound.

    The calls are awaited as tasks of their own (`common.errors.answer_each` gathers them), so each item's
    binding stays with that item; `method` names the item's single call in the DEBUG line."""
    return [_with_id(id_of(item), getattr(item, "user_id", None), call(item), method) for item in items]
