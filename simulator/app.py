"""The simulator's ASGI app: an Anthropic Messages API look-alike the real `anthropic` SDK talks to.

Kept lean because the benchmark drives it at concurrency 64: plain Starlette routes, stdlib `json`,
precomputed headers and cached fault parsing; no middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import time
from collections import deque
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.faults import ATTEMPT_HEADER, ERROR_FAULTS, NO_FAULT, Fault, FaultSpecError, parse_fault
from simulator.responder import build_message, message_to_sse
from simulator.settings import SimulatorSettings
from simulator.tokens import count_input_tokens
from simulator.validation import InvalidRequest, validate_request

log = logging.getLogger("simulator")

FAULT_HEADER = "x-sim-fault"
HANG_SECONDS = 3600.0  # "never" answer, but let an abandoned task end eventually
ATTEMPT_LOG_SIZE = 10_000  # tagged requests remembered for GET /_sim/attempts (tests only)
JSON = "application/json"

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_counter = itertools.count(1)
_boot_salt = os.urandom(16)


def new_request_id() -> str:
    """`req_` + 24 hex: a process counter hashed with a per-boot salt, so ids are unique and opaque."""
    digest = hashlib.blake2b(next(_counter).to_bytes(8, "big"), key=_boot_salt, digest_size=12)
    return "req_" + digest.hexdigest()


def _json_response(payload: dict[str, Any], request_id: str, status: int = 200, **headers: str) -> Response:
    all_headers = {"request-id": request_id, **headers}
    return Response(_encode(payload), status_code=status, media_type=JSON, headers=all_headers)


def error_response(status: int, error_type: str, message: str, request_id: str, **headers: str) -> Response:
    """The real API's error envelope: `{"type":"error","error":{...},"request_id":...}`."""
    payload = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    return _json_response(payload, request_id, status, **headers)


async def _wait_for_disconnect(request: Request) -> None:
    """Return once the client has gone away (any unread body messages are drained and ignored)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Simulator:
    """Request handlers bound to the start-up settings."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.default_fault = parse_fault(settings.fault)
        self.latency_s = settings.latency_ms / 1000
        #: (tag, attempt number, arrival on this process's monotonic clock) of each tagged request.
        self.attempt_log: deque[tuple[str, int, float]] = deque(maxlen=ATTEMPT_LOG_SIZE)

    def _fault(self, request: Request) -> Fault:
        header = request.headers.get(FAULT_HEADER)
        fault = self.default_fault if header is None or not header.strip() else parse_fault(header)
        if fault is NO_FAULT:
            return fault
        attempt = _attempt_number(request)
        if fault.tag is not None:
            self.attempt_log.append((fault.tag, attempt, time.monotonic()))
        return fault.for_attempt(attempt)

    async def attempts(self, request: Request) -> Response:
        """GET /_sim/attempts?tag=<token>: the recorded attempts of tagged requests, oldest first."""
        tag = request.query_params.get("tag", "").lower()
        rows = [{"attempt": attempt, "at": at} for t, attempt, at in self.attempt_log if t == tag]
        return Response(_encode({"tag": tag, "attempts": rows}), media_type=JSON)

    async def _prelude(self, request: Request, request_id: str) -> tuple[Fault, Any] | Response:
        """Shared front half of both endpoints: fault parse, auth, latency, faults, body validation.

        Returns the fault and parsed body, or the response to send instead.
        """
        try:
            fault = self._fault(request)
        except FaultSpecError as exc:
            return error_response(400, "invalid_request_error", f"{FAULT_HEADER}: {exc}", request_id)
        if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
            return error_response(401, "authentication_error", "x-api-key header is required", request_id)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault is not NO_FAULT:
            if fault.hang:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_wait_for_disconnect(request), HANG_SECONDS)
                return error_response(504, "api_error", "hang fault: gave up waiting (simulated)", request_id)
            if fault.error is not None:
                status, error_type, message = ERROR_FAULTS[fault.error]
                return error_response(status, error_type, message, request_id, **fault.error_headers(status))
            if fault.slow_ms:
                await asyncio.sleep(fault.slow_ms / 1000)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "invalid_request_error", "Request body is not valid JSON", request_id)
        return fault, body

    async def messages(self, request: Request) -> Response:
        """POST /v1/messages."""
        request_id = new_request_id()
        outcome = await self._prelude(request, request_id)
        if isinstance(outcome, Response):
            return outcome
        fault, body = outcome
        try:
            tools = validate_request(body)
        except InvalidRequest as exc:
            return error_response(400, "invalid_request_error", str(exc), request_id)
        message = build_message(body, tools, "msg_01" + request_id[4:], bad_schema=fault.bad_schema)
        if fault.input_tokens is not None:
            message["usage"]["input_tokens"] = fault.input_tokens
        if body.get("stream") is True:
            return Response(
                message_to_sse(message),
                media_type="text/event-stream",
                headers={"request-id": request_id, "cache-control": "no-cache"},
            )
        return _json_response(message, request_id)

    async def count_tokens(self, request: Request) -> Response:
        """POST /v1/messages/count_tokens (same counting as the `usage.input_tokens` of a message)."""
        request_id = new_request_id()
        outcome = await self._prelude(request, request_id)
        if isinstance(outcome, Response):
            return outcome
        _, body = outcome
        try:
            validate_request(body, require_max_tokens=False)
        except InvalidRequest as exc:
            return error_response(400, "invalid_request_error", str(exc), request_id)
        return _json_response({"input_tokens": count_input_tokens(body)}, request_id)


def _attempt_number(request: Request) -> int:
    """The request's attempt number within its logical call (0 = first try), from the SDK's retry counter."""
    value = request.headers.get(ATTEMPT_HEADER, "0").strip()
    return int(value) if value.isdigit() else 0


async def healthz(_: Request) -> Response:
    """GET /healthz: liveness for the dev stack's launcher."""
    return Response(b'{"status":"ok"}', media_type=JSON)


async def _http_error(_: Request, exc: Exception) -> Response:
    """Unknown paths / methods get the API's JSON error envelope rather than Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error_type = {404: "not_found_error", 405: "invalid_request_error"}.get(status, "api_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
    return error_response(status, error_type, str(detail), new_request_id())


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "api_error", "Internal server error (simulator bug)", new_request_id())


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    """Build the ASGI app; `settings` defaults to the `SIM_*` environment."""
    sim = Simulator(settings or SimulatorSettings())
    routes = [
        Route("/v1/messages", sim.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", sim.count_tokens, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_sim/attempts", sim.attempts, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
