"""`claude.read_message`: the fields of a Messages API response we use, read from its raw JSON, and a clear
refusal of anything that is not a message (the caller turns that into a failed, uncharged call)."""

from __future__ import annotations

from typing import Any

import pytest

from services.generation.claude import read_message

TOOL = {"name": "record_scene", "input_schema": {"type": "object"}}


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Thinking. "},
                    {"type": "tool_use", "id": "toolu_1", "name": "record_scene", "input": {"title": "T"}},
                    {"type": "text", "text": "Done."}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 120},
    }
    body.update(overrides)
    return body


def test_reads_usage_tool_input_text_and_ids() -> None:
    reply = read_message(message(), "req_abc", TOOL)
    assert reply.ok
    assert (reply.input_tokens, reply.output_tokens) == (900, 120)
    assert reply.tool_input == {"title": "T"}
    assert reply.text == "Thinking. Done."
    assert reply.request_id == "req_abc"
    assert reply.stop_reason == "tool_use"


def test_message_id_stands_in_for_a_missing_request_id() -> None:
    assert read_message(message(), None, TOOL).request_id == "msg_1"


def test_a_tool_use_block_of_another_tool_is_not_taken() -> None:
    body = message(content=[{"type": "tool_use", "id": "t", "name": "other_tool", "input": {"x": 1}}])
    assert read_message(body, "r", TOOL).tool_input is None
    assert read_message(body, "r", None).tool_input is None


@pytest.mark.parametrize("body", [
    [],
    "text",
    {"type": "error", "error": {"type": "api_error", "message": "x"}},
    message(usage={"input_tokens": 1}),
    message(usage={"input_tokens": "900", "output_tokens": 1}),
    message(usage={"input_tokens": True, "output_tokens": 1}),
    message(usage={"input_tokens": -1, "output_tokens": 1}),
    message(usage=None),
    message(content=None),
    message(content=[{"text": "no type"}]),
    message(content=[{"type": "tool_use", "name": "record_scene"}]),
])
def test_anything_but_a_message_is_refused(body: Any) -> None:
    with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):
        read_message(body, "r", TOOL)
