"""JSON responses that carry Decimal credits as JSON numbers, exactly (never through float)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import simplejson
from starlette.responses import JSONResponse

from common.money import for_json


def _clean(value: Any) -> Any:
    if isinstance(value, Decimal):
        return for_json(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def dumps(content: Any) -> bytes:
    return simplejson.dumps(_clean(content), use_decimal=True, ensure_ascii=False, separators=(",", ":")).encode()


def extend_object(object_json: str, extra: dict[str, Any]) -> bytes:
    """`object_json` (a JSON object from one of our services) with `extra`'s members appended, without
    decoding and re-encoding the object: a scene or a set of acts passes through the edge as it came."""
    head = object_json.strip()
    if not (head.startswith("{") and head.endswith("}")):
        raise ValueError("not a JSON object")
    tail = dumps(extra)
    if head[:-1].rstrip().endswith("{"):  # an empty object
        return tail
    return head[:-1].encode() + b"," + tail[1:]


class DecimalJSONResponse(JSONResponse):
    """`JSONResponse` whose Decimals render as numbers: 100, 2.43, 0.0001."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
