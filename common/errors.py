"""The root of every service's domain errors and their one translation to gRPC status codes.

    DomainError                      (each service draws its own subtree in its errors module)
    └── carries .code: grpc.StatusCode and a fixed .message

Servicers raise domain errors; `DomainErrorInterceptor` turns them into gRPC statuses in one place,
and database outages into UNAVAILABLE, so no servicer method handles errors by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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
_DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)


def _wrap(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await inner(request, context)
        except DomainError as exc:
            # Some messages quote the caller's input (a template id, a model): never send a key back.
            await context.abort(exc.code, redact(exc.message))
        except _DB_DOWN as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            await context.abort(grpc.StatusCode.UNAVAILABLE, Unavailable.message)

    return handler


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
