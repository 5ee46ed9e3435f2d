"""Builds Messages API response bodies (and their SSE form) for a validated request.

Pure functions of the request: the random generator is seeded from a hash of the canonical request
JSON, so the same request body always yields the same content. Only the message id (passed in) is
unique per call, as on the real API.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from simulator import prose
from simulator.schema_gen import generate_bad_input, generate_input
from simulator.tokens import count_input_tokens, count_tokens

MIN_NATURAL_TOKENS = 40  # a scene needs a heading and two exchanges to read like one
MAX_NATURAL_TOKENS = 1500  # keeps per-request work bounded whatever max_tokens says
CHARS_PER_TOKEN = 4
SSE_CHUNK_CHARS = 48

_dumps_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_canonical = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def seeded_rng(body: dict[str, Any]) -> random.Random:
    """A generator seeded from the canonical request JSON (`stream` excluded: same content either way)."""
    canonical = _dumps_canonical({k: v for k, v in body.items() if k != "stream"})
    digest = hashlib.blake2b(canonical.encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _forced_tool(body: dict[str, Any], tools: dict[str, dict[str, Any]], rng: random.Random) -> Any:
    """The tool the model must call, or None for a text answer (tool_choice auto / none / absent)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool":
        return tools[choice["name"]]
    if choice.get("type") == "any":
        callable_tools = [t for t in tools.values() if isinstance(t.get("input_schema"), dict)]
        return rng.choice(callable_tools) if callable_tools else None
    return None


def _text_answer(max_tokens: int, rng: random.Random) -> tuple[str, str]:
    """A Fountain scene sized from max_tokens; truncated (stop_reason max_tokens) if it would overflow."""
    natural = max(MIN_NATURAL_TOKENS, min(MAX_NATURAL_TOKENS, int(max_tokens * rng.uniform(0.5, 0.75))))
    text = prose.fountain_scene(rng, natural * CHARS_PER_TOKEN)
    limit = max_tokens * CHARS_PER_TOKEN
    if len(text) > limit:
        return text[:limit].rstrip() or text[:limit], "max_tokens"
    return text, "end_turn"


def build_message(
    body: dict[str, Any],
    tools: dict[str, dict[str, Any]],
    message_id: str,
    *,
    bad_schema: bool = False,
) -> dict[str, Any]:
    """The full `message` object for a validated `/v1/messages` request."""
    rng = seeded_rng(body)
    max_tokens: int = body["max_tokens"]
    tool = _forced_tool(body, tools, rng)
    content: list[dict[str, Any]]
    if tool is not None:
        schema = tool.get("input_schema", {})
        tool_input = generate_bad_input(schema, rng) if bad_schema else generate_input(schema, rng)
        output_tokens = count_tokens(_dumps_compact(tool_input))
        stop_reason = "tool_use"
        if output_tokens > max_tokens:  # the real API cuts the JSON off; an empty input is the honest analogue
            tool_input, output_tokens, stop_reason = {}, max_tokens, "max_tokens"
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_01{rng.getrandbits(88):022x}",
                "name": tool["name"],
                "input": tool_input,
            }
        ]
    else:
        text, stop_reason = ("", "end_turn") if bad_schema else _text_answer(max_tokens, rng)
        output_tokens = min(max_tokens, count_tokens(text))
        content = [{"type": "text", "text": text}]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": count_input_tokens(body),
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {_dumps_compact(data)}\n\n"


def _chunks(text: str) -> list[str]:
    return [text[i : i + SSE_CHUNK_CHARS] for i in range(0, len(text), SSE_CHUNK_CHARS)] or [""]


def message_to_sse(message: dict[str, Any]) -> str:
    """The same message as a `stream: true` SSE event sequence (sent in one go; content is precomputed)."""
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
    events = [_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            head: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": part} for part in _chunks(block["text"])]
        else:
            head = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in _chunks(_dumps_compact(block["input"]))
            ]
        events.append(
            _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": head})
        )
        for delta in deltas:
            events.append(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return "".join(events)
