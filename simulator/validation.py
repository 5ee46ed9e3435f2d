"""Request validation close enough to the real Messages API to catch client bugs early.

Only the structure the simulator relies on is checked; messages mirror the real API's
``field: problem`` style so they are recognisable in logs.
"""

from __future__ import annotations

from typing import Any

ROLES = frozenset(("user", "assistant"))
TOOL_CHOICE_TYPES = frozenset(("auto", "any", "tool", "none"))


class InvalidRequest(ValueError):
    """A 400 `invalid_request_error`; the message is returned to the client verbatim."""


def _require_positive_int(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"{key}: Field required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key}: Input should be a valid integer")
    if value < 1:
        raise InvalidRequest(f"{key}: Input should be greater than or equal to 1")


def _check_content(index: int, content: Any) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"messages.{index}.content: Input should be a valid string or list of blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"messages.{index}.content.{j}: each content block needs a string `type`")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"messages.{index}.content.{j}.text: Field required")


def _check_tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate `tools` and return them by name."""
    tools = body.get("tools")
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    by_name: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"tools.{i}.name: Field required")
        if name in by_name:
            raise InvalidRequest(f"tools: Tool names must be unique (duplicate {name!r})")
        schema = tool.get("input_schema")
        if "type" not in tool or tool.get("type") == "custom":  # server tools carry no input_schema
            if not isinstance(schema, dict):
                raise InvalidRequest(f"tools.{i}.input_schema: Field required")
            if schema.get("type") != "object":
                raise InvalidRequest(f"tools.{i}.input_schema.type: Input should be 'object'")
        by_name[name] = tool
    return by_name


def validate_request(body: Any, *, require_max_tokens: bool = True) -> dict[str, dict[str, Any]]:
    """Validate a Messages request body; returns the tools by name. Raises InvalidRequest.

    `count_tokens` requests carry no `max_tokens` (the SDK does not send it), hence the flag.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required")
    if require_max_tokens:
        _require_positive_int(body, "max_tokens")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ROLES:
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        _check_content(i, message["content"])
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    tools = _check_tools(body)
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICE_TYPES:
            raise InvalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] in ("any", "tool") and not tools:
            raise InvalidRequest("tool_choice: may only be specified while providing tools")
        if choice["type"] == "tool":
            name = choice.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest("tool_choice.name: Field required")
            if name not in tools:
                raise InvalidRequest(f"tool_choice: Tool '{name}' not found in provided tools")
    return tools
