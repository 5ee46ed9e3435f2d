"""Every error the edge answers, as one exception type with a status and a JSON body, and the one
place where gRPC statuses from the services become HTTP statuses.

Bodies follow the guide: `{"error": "<short fixed text>", "message": "<detail>", ...}`. Their texts go
through `redact`, because some echo what the caller sent (a template id, a model, a field name) and an API
key pasted into the wrong place must not come back in a body, a proxy's log or a screenshot.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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


API_KEY_REQUIRED = ApiError(401, "API key required", "Please provide an API key in the X-API-Key header")
INVALID_API_KEY = ApiError(401, "Invalid API key")
#: The `fields` entry of a 422 for an Idempotency-Key reused with another request (every 422 names its fields).
IDEMPOTENCY_KEY_REUSED = {"field": "Idempotency-Key", "message": "already used with a different request"}
ADMIN_REQUIRED = ApiError(403, "Admin access required", "This endpoint requires an admin API key")


class BodyTooLarge(StarletteHTTPException):
    """A request body over the configured limit. An `HTTPException` so that FastAPI's body reader, which
    turns any other exception raised while reading into a 400, passes it on unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.error = ApiError(413, "Request body too large", f"The request body must be at most {limit} bytes")

    def response(self) -> DecimalJSONResponse:
        return DecimalJSONResponse(self.error.body, status_code=413)

#: gRPC status → HTTP status for errors the services raise on purpose (their domain errors).
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def from_grpc(exc: grpc.aio.AioRpcError, service: str) -> ApiError:
    """Translate a failed service call, once, for every route."""
    code = exc.code()
    status = GRPC_TO_HTTP.get(code, 502)
    if status in (503, 504):
        return ApiError(status, "Service unavailable", f"The {service} service is unavailable; please retry")
    if status == 502:
        log.error("%s call failed: %s %s", service, code.name, exc.details())
        return ApiError(502, "Upstream error", f"The {service} service failed")
    detail = exc.details() or code.name
    return ApiError(status, detail)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    # A body FastAPI did not parse as JSON (no or another Content-Type) reaches validation as raw bytes.
    if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
        return "expected a JSON object with Content-Type: application/json"
    return str(error.get("msg", "invalid"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> DecimalJSONResponse:
        return DecimalJSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

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
