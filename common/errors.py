"""The root of every service's domain errors and their one translation to gRPC status codes.

    DomainError                      (each service draws its own subtree in its errors module)
    └── carries .code: grpc.StatusCode and a fixed .message

Servicers raise domain errors; `DomainErrorInterceptor` turns them into gRPC statuses in one place,
and database outages into UNAVAILABLE, so no servicer method handles errors by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import grpc

from common.logging import redact

log = logging.getLogger(__name__)


class DomainError(Exception):
    """An expected failure with a gRPC status code and a client-safe message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    message: str = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.message
        super().__init__(self.message)


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    message = "database unavailable"


#: The database is away (or going away): the statement did not commit, so the caller may retry. Admin and
#: crash shutdowns (SQLSTATE 57P01/57P02) end the session the way a lost connection does.
DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)
#: The statement was rolled back by a conflict with another transaction: nothing happened, a retry is safe.
_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a failed call answers with, or None for an unexpected error (a bug: left to gRPC)."""
    if isinstance(exc, DomainError):
        # Some messages quote the caller's input (a template id, a model): never send a key back.
        return exc.code, redact(exc.message)
    if isinstance(exc, DB_DOWN):
        log.warning("database unavailable: %s", type(exc).__name__)
        return grpc.StatusCode.UNAVAILABLE, Unavailable.message
    if isinstance(exc, _TRANSIENT):
        log.warning("database conflict: %s", type(exc).__name__)
        return grpc.StatusCode.UNAVAILABLE, "database busy; retry"
    return None


def _wrap(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await inner(request, context)
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                raise
            await context.abort(*status)

    return handler


async def answer_each(calls: Iterable[Awaitable[Any]], outcome: Callable[..., Any], status: Callable[..., Any]
                      ) -> list[Any]:
    """A batch RPC's items: its calls run concurrently and each is answered as `outcome(response=…)` or
    `outcome(status=status(code=…, message=…))`, exactly the status its single call would have answered with.
    An unexpected error is INTERNAL (logged), and fails that item alone."""

    async def one(call: Awaitable[Any]) -> Any:
        try:
            return outcome(response=await call, status=status(code=0))
        except Exception as exc:
            found = status_of(exc)
            if found is None:
                log.exception("unexpected error in a batch item")
                found = (grpc.StatusCode.INTERNAL, "internal error")
            code, message = found
            return outcome(status=status(code=code.value[0], message=message))

    return list(await asyncio.gather(*(one(call) for call in calls)))


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps `DomainError` (and lost database connections) to gRPC status codes for unary methods."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
