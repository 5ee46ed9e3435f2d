"""How the edge reads JSON request bodies: standard JSON only, in a form every service can store.

FastAPI parses bodies with `json.loads`, which is lenient in ways that hurt here: it accepts `NaN`,
`Infinity` and `-Infinity` (not JSON), reads `1e309` as `inf`, decodes UTF-16/32 and lone surrogates
(which protobuf cannot encode: a 500 later), lets `\\u0000` through (PostgreSQL text and jsonb cannot
store it: a 5xx after Claude was paid for) and answers deep nesting with a `RecursionError`. `loads`
refuses all of these with `json.JSONDecodeError`, which FastAPI turns into our 400 "Invalid JSON".

Numbers written with a fraction or exponent are read as `JsonFloat`: a float that keeps its JSON text,
so money can be read exactly from what the client sent (never through binary floating point).
`JsonRoute` makes a router's routes use this parser.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

#: Deeper bodies are refused; no request of ours needs more than a handful of levels.
MAX_DEPTH = 32


class JsonFloat(float):
    """A JSON number with a fraction or exponent; `text` is exactly what the client wrote."""

    __slots__ = ("text",)
    text: str


def _float(text: str) -> JsonFloat:
    number = JsonFloat(text)
    if not math.isfinite(number):
        raise json.JSONDecodeError("number out of range", text, 0)
    number.text = text
    return number


def _constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


_DECODER = json.JSONDecoder(parse_float=_float, parse_constant=_constant)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _bad_string(value: Any) -> str | None:
    """Why some key or string in `value` cannot be stored (NUL, lone surrogate), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "strings must not contain NUL (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "strings must not contain unpaired surrogates"
    return None


def loads(body: bytes) -> Any:
    """Parse a request body strictly (see the module docstring); raises `json.JSONDecodeError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8", "", exc.start) from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit conversion limit
        raise json.JSONDecodeError(str(exc).split(":")[0], "", 0) from None
    # Cheap gates first: only a body with that many brackets can be that deep, and only one with an
    # escape can hold a NUL or a lone surrogate (raw ones are refused by the UTF-8 decode and by JSON).
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth_exceeds(value, MAX_DEPTH):
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    if "\\u" in text and (reason := _bad_string(value)):
        raise json.JSONDecodeError(reason, "", 0)
    return value


class JsonRequest(Request):
    """A request whose `.json()` is the strict `loads` (FastAPI reads bodies through `.json()`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """Route class for our routers: FastAPI's handler, given a `JsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return strict_handler
