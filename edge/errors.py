"""Every error the edge answers, as one exception type with a status and a JSON body, and the one place where
the services' refusals (and, for failures that are not refusals, gRPC statuses) become HTTP answers.

Bodies follow the guide: `{"error": "<short fixed text>", "message": "<detail>", ...}`. Their texts go
through `redact`, because some echo what the caller sent (a template id, a model, a field name) and an API
key pasted into the wrong place must not come back in a body, a proxy's log or a screenshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import REFUSAL_METADATA, Refusal
from common.logging import redact
from edge.json import DecimalJSONResponse

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with a JSON body."""

    def __init__(self, status: int, error: str, message: str | None = None, **extra: Any) -> None:
        self.status = status
        self.headers: dict[str, str] | None = None
        self.body: dict[str, Any] = {"error": redact(error)}
        if message is not None:
            self.body["message"] = redact(message)
        self.body.update(extra)
        super().__init__(error)


class ApiKeyRequired(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "API key required", "Please provide an API key in the X-API-Key header")


class InvalidApiKey(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "Invalid API key")


class AdminRequired(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "Admin access required", "This endpoint requires an admin API key")


class IdempotencyKeyReused(ApiError):
    """422, naming the header as every 422 names its fields."""

    def __init__(self) -> None:
        super().__init__(422, "Idempotency key reused",
                         "This Idempotency-Key was already used with a different request; use a new key",
                         fields=[{"field": "Idempotency-Key", "message": "already used with a different request"}])


class BodyTooLarge(StarletteHTTPException):
    """A request body over the configured limit. An `HTTPException` so that FastAPI's body reader, which
    turns any other exception raised while reading into a 400, passes it on unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.error = ApiError(413, "Request body too large", f"The request body must be at most {limit} bytes")

    def response(self) -> DecimalJSONResponse:
        return DecimalJSONResponse(self.error.body, status_code=413)

def _unavailable(status: int, service: str) -> ApiError:
    return ApiError(status, "Service unavailable", f"The {service} service is unavailable; please retry")


#: A service's refusal → the edge's answer (the service's message is fixed text, made safe by the service).
REFUSALS: dict[Refusal, Callable[[str, str], ApiError]] = {
    Refusal.INVALID_INPUT: lambda detail, service: ApiError(400, detail),
    Refusal.NOT_FOUND: lambda detail, service: ApiError(404, detail),
    Refusal.ALREADY_EXISTS: lambda detail, service: ApiError(409, detail),
    Refusal.CONFLICT: lambda detail, service: ApiError(409, detail),
    Refusal.IDEMPOTENCY_KEY_REUSED: lambda detail, service: IdempotencyKeyReused(),
    Refusal.LAST_ENABLED_ADMIN: lambda detail, service: ApiError(409, "Last enabled admin", detail),
    Refusal.UNAVAILABLE: lambda detail, service: _unavailable(503, service),
    Refusal.PAYMENT_DECLINED: lambda detail, service: ApiError(402, "Payment declined", detail),
    Refusal.PAYMENT_PROVIDER: lambda detail, service: ApiError(503, "Payment provider unavailable", detail),
}


def refusal_of(exc: grpc.aio.AioRpcError) -> Refusal | None:
    for key, value in exc.trailing_metadata() or ():
        if key == REFUSAL_METADATA:
            return Refusal(value) if value in Refusal._value2member_map_ else None
    return None


def from_grpc(exc: grpc.aio.AioRpcError, service: str) -> ApiError:
    """Translate a failed service call, once, for every route: a refusal from its table; any other failure
    (a deadline, a lost connection, a bug) by its status."""
    refusal = refusal_of(exc)
    if refusal is not None:
        return REFUSALS[refusal](exc.details() or refusal, service)
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return _unavailable(503, service)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _unavailable(504, service)
    log.error("%s call failed: %s %s", service, code.name, exc.details())
    return ApiError(502, "Upstream error", f"The {service} service failed")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    # A body FastAPI did not parse as JSON (no or another Content-Type) reaches validation as raw bytes.
    if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
        return "expected a JSON object with Content-Type: application/json"
    return str(error.get("msg", "invalid"))


def error_response(exc: ApiError) -> DecimalJSONResponse:
    return DecimalJSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> DecimalJSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> DecimalJSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> DecimalJSONResponse:
        errors = exc.errors()
        invalid = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if invalid is not None:
            # The parser's reason is a fixed text ("Expecting value", "NaN is not valid JSON"), never input.
            reason = (invalid.get("ctx") or {}).get("error")
            message = "The request body is not valid JSON" + (f": {redact(str(reason))}" if reason else "")
            return DecimalJSONResponse({"error": "Invalid JSON", "message": message}, status_code=400)
        # Never pydantic's `input` (it echoes the value sent); names and messages redacted, as a field name
        # can be anything the caller typed.
        fields = [{"field": redact(_field_name(tuple(e.get("loc", ())))), "message": redact(_message(e))}
                  for e in errors]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return DecimalJSONResponse(
            {"error": "Invalid request", "message": summary, "fields": fields}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> DecimalJSONResponse:
        text = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code) or redact(str(exc.detail))
        return DecimalJSONResponse({"error": text}, status_code=exc.status_code)
