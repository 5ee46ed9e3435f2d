"""The root of every service's domain errors and their one translation to gRPC statuses.

    DomainError                      (each service draws its own subtree in its errors module)
    └── carries .refusal: Refusal and a fixed .message; its gRPC code follows from the refusal

Servicers raise domain errors; `DomainErrorInterceptor` turns them into gRPC statuses in one place (and
database outages into UNAVAILABLE), so no servicer method handles errors by hand. The refusal travels with
the status, in the trailing metadata `fsg-refusal` (and in a batch item's status), so the edge answers each
one from a single table (edge/errors.py) instead of guessing from a status code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any

import asyncpg
import grpc

from common.logging import get_logger, redact

log = logging.getLogger(__name__)
_events = get_logger(__name__)


class Refusal(StrEnum):
    """Why a service refused a call, named once for every service and the edge."""

    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFLICT = "conflict"  # the request is well formed but contradicts the state (a post over its hold)
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    LAST_ENABLED_ADMIN = "last_enabled_admin"
    UNAVAILABLE = "unavailable"
    PAYMENT_DECLINED = "payment_declined"  # the buyer's card or payment method was refused
    PAYMENT_PROVIDER = "payment_provider"  # the payment provider failed or is not configured


#: The gRPC status each refusal travels as.
REFUSAL_CODES: dict[Refusal, grpc.StatusCode] = {
    Refusal.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Refusal.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Refusal.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.IDEMPOTENCY_KEY_REUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.LAST_ENABLED_ADMIN: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Refusal.PAYMENT_DECLINED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.PAYMENT_PROVIDER: grpc.StatusCode.UNAVAILABLE,
}
#: The trailing-metadata key that carries the refusal.
REFUSAL_METADATA = "fsg-refusal"


class DomainError(Exception):
    """An expected failure with a refusal reason and a client-safe message."""

    refusal: Refusal = Refusal.INVALID_INPUT
    message: str = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.message
        super().__init__(self.message)

    @property
    def code(self) -> grpc.StatusCode:
        return REFUSAL_CODES[self.refusal]


class Unavailable(DomainError):
    refusal = Refusal.UNAVAILABLE
    message = "database unavailable"


#: The database is away (or going away): the statement did not commit, so the caller may retry. Admin and
#: crash shutdowns (SQLSTATE 57P01/57P02) end the session the way a lost connection does. asyncpg's
#: InternalClientError is a connection the server left mid-protocol: the next statement on it fails before
#: it is sent ("cannot switch to state …; another operation is in progress").
DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
           asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.InternalClientError)
#: The statement was rolled back by a conflict with another transaction: nothing happened, a retry is safe.
_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def status_of(exc: BaseException) -> tuple[Refusal, str] | None:
    """The refusal a failed call answers with, and its message, or None for an unexpected error (a bug: left
    to gRPC)."""
    if isinstance(exc, DomainError):
        # Some messages quote the caller's input (a template id, a model): never send a key back.
        return exc.refusal, redact(exc.message)
    if isinstance(exc, DB_DOWN):
        _events.warning("db.connection_problem", message=f"database unavailable: {type(exc).__name__}",
                        error=type(exc).__name__, where="request")
        return Refusal.UNAVAILABLE, Unavailable.message
    if isinstance(exc, _TRANSIENT):
        log.warning("database conflict: %s", type(exc).__name__)
        return Refusal.UNAVAILABLE, "database busy; retry"
    return None


def _wrap(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await inner(request, context)
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                raise
            refusal, message = status
            await context.abort(REFUSAL_CODES[refusal], message, trailing_metadata=((REFUSAL_METADATA, refusal),))

    return handler


async def answer_each(calls: Iterable[Awaitable[Any]], outcome: Callable[..., Any], status: Callable[..., Any]
                      ) -> list[Any]:
    """A batch RPC's items: its calls run concurrently and each is answered as `outcome(response=…)` or
    `outcome(status=status(code=…, message=…))`, exactly the status its single call would have answered with.
    An unexpected error is INTERNAL (logged), and fails that item alone. The item's status carries its refusal
    as the single call's trailing metadata does."""

    async def one(call: Awaitable[Any]) -> Any:
        try:
            return outcome(response=await call, status=status(code=0))
        except Exception as exc:
            return outcome(status=item_status(exc, status))

    return list(await asyncio.gather(*(one(call) for call in calls)))


def item_status(exc: BaseException, status: Callable[..., Any]) -> Any:
    """A failed batch item's status message (`status` is the service's ItemStatus): the code, message and
    refusal its single call would have answered with; INTERNAL (logged) for an unexpected error."""
    found = status_of(exc)
    if found is None:
        log.error("unexpected error in a batch item", exc_info=exc)
        return status(code=grpc.StatusCode.INTERNAL.value[0], message="internal error")
    refusal, message = found
    return status(code=REFUSAL_CODES[refusal].value[0], message=message, refusal=refusal)


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
