"""Token accounting: one cheap, deterministic rule (about four characters per token) used everywhere.

Billing downstream meters on these numbers, so `/v1/messages` and `/v1/messages/count_tokens` must agree;
both go through `count_tokens` and `input_text`.
"""

from __future__ import annotations

import json
from typing import Any


def count_tokens(text: str) -> int:
    """ceil(len(text) / 4), at least 1: close enough to real tokenizers for English prose."""
    return max(1, -(-len(text) // 4))


def _content_text(content: Any, parts: list[str]) -> None:
    """Collect the text a model would read from a message `content` (string or list of blocks)."""
    if isinstance(content, str):
        parts.append(content)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
        elif kind == "tool_use":
            parts.append(json.dumps(block.get("input", {}), separators=(",", ":")))
        elif kind == "tool_result":
            _content_text(block.get("content", ""), parts)


def input_text(body: dict[str, Any]) -> str:
    """All prompt text of a (validated) request: system + messages + the tools' JSON."""
    parts: list[str] = []
    _content_text(body.get("system", ""), parts)
    for message in body.get("messages", ()):
        _content_text(message.get("content", ""), parts)
    tools = body.get("tools")
    if tools:
        parts.append(json.dumps(tools, separators=(",", ":")))
    return "\n".join(parts)


def count_input_tokens(body: dict[str, Any]) -> int:
    """Input token count of a validated request."""
    return count_tokens(input_text(body))
