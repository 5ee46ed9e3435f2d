"""The simulator exercised through the real `anthropic` SDK against a real uvicorn server."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import anthropic
import httpx
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from simulator.faults import FaultSpecError, parse_fault
from simulator.schema_gen import generate_bad_input, generate_input
from simulator.settings import SimulatorSettings
from simulator.tokens import count_tokens

MODEL = "claude-sim-test"
USER = [{"role": "user", "content": "Write a tense scene in a warehouse."}]
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way `value` breaks `schema` (JSON Schema 2020-12, as the Messages API reads tool schemas)."""
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in Draft202012Validator(schema).iter_errors(value)]


SCENE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 40},
        "logline": {"type": "string"},
        "genre": {"type": "string", "enum": ["noir", "comedy", "western"]},
        "runtime_minutes": {"type": "integer", "minimum": 80, "maximum": 150},
        "rating": {"type": "number", "minimum": 0, "maximum": 10},
        "is_sequel": {"type": "boolean"},
        "scenes": {
            "type": "array",
            "minItems": 2,
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "slugline": {"type": "string"},
                    "summary": {"type": "string"},
                    "beats": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"character": {"type": "string"}, "dialogue": {"type": "string"}},
                            "required": ["character", "dialogue"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["slugline", "summary", "beats"],
                "additionalProperties": False,
            },
        },
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["title", "genre", "scenes", "runtime_minutes"],
    "additionalProperties": False,
}
SCENE_TOOL = {"name": "write_script", "description": "Emit a script outline.", "input_schema": SCENE_SCHEMA}
FORCED = {"type": "tool", "name": "write_script"}


# --- through the SDK ------------------------------------------------------------------------------------


async def test_text_message(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(model=MODEL, max_tokens=400, system="You write films.", messages=USER)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.id.startswith("msg_")
    assert REQUEST_ID.match(msg._request_id or "")
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert len(msg.content) == 1 and msg.content[0].type == "text"
    text = msg.content[0].text
    blocks = text.split("\n\n")
    assert re.match(r"^(INT\.|EXT\.|INT\./EXT\.) [A-Z .]+ - [A-Z ]+$", blocks[0])
    cues = [b.split("\n") for b in blocks[2:]]
    assert len(cues) >= 2
    for lines in cues:
        assert lines[0] == lines[0].upper() and len(lines) in (2, 3)
    expected_input = count_tokens("You write films.\n" + USER[0]["content"])
    assert msg.usage.input_tokens == expected_input
    assert msg.usage.output_tokens == count_tokens(text) <= 400
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0


async def test_request_ids_unique(client: anthropic.AsyncAnthropic) -> None:
    a = await client.messages.create(model=MODEL, max_tokens=50, messages=USER)
    b = await client.messages.create(model=MODEL, max_tokens=50, messages=USER)
    assert a._request_id != b._request_id and a.id != b.id


async def test_forced_tool_matches_nested_schema(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(
        model=MODEL, max_tokens=4000, messages=USER, tools=[SCENE_TOOL], tool_choice=FORCED  # type: ignore[list-item,arg-type]
    )
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "write_script" and block.id.startswith("toolu_")
    assert schema_errors(block.input, SCENE_SCHEMA) == []
    scenes = block.input["scenes"]
    assert re.match(r"^(INT\.|EXT\.|INT\./EXT\.) ", scenes[0]["slugline"])
    assert block.input["title"][0].isupper()
    assert msg.usage.output_tokens == count_tokens(json.dumps(block.input, separators=(",", ":")))
    assert msg.usage.input_tokens == count_tokens(
        USER[0]["content"] + "\n" + json.dumps([SCENE_TOOL], separators=(",", ":"))
    )


async def test_deterministic(client: anthropic.AsyncAnthropic) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": USER}
    first = await client.messages.create(**kwargs)
    second = await client.messages.create(**kwargs)
    assert first.content == second.content and first.usage == second.usage
    other = await client.messages.create(**{**kwargs, "messages": [{"role": "user", "content": "Another."}]})
    assert other.content != first.content
    tool_kwargs = {**kwargs, "max_tokens": 4000, "tools": [SCENE_TOOL], "tool_choice": FORCED}
    t1 = await client.messages.create(**tool_kwargs)
    t2 = await client.messages.create(**tool_kwargs)
    assert t1.content == t2.content


async def test_max_tokens_truncates(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens <= 10
    assert len(msg.content[0].text) <= 40  # type: ignore[union-attr]
    big = await client.messages.create(model=MODEL, max_tokens=1000, messages=USER)
    assert big.stop_reason == "end_turn"
    assert 200 <= big.usage.output_tokens <= 1000


async def test_streaming_matches_non_streaming(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(model=MODEL, max_tokens=200, messages=USER) as stream:
        streamed = await stream.get_final_message()
    plain = await client.messages.create(model=MODEL, max_tokens=200, messages=USER)
    assert [b.model_dump(include={"type", "text"}) for b in streamed.content] == [
        b.model_dump(include={"type", "text"}) for b in plain.content
    ]
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.stop_reason == plain.stop_reason


async def test_count_tokens_agrees(client: anthropic.AsyncAnthropic) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "system": "Be brief.", "messages": USER, "tools": [SCENE_TOOL]}
    counted = await client.messages.count_tokens(**kwargs)
    msg = await client.messages.create(max_tokens=4000, tool_choice=FORCED, **kwargs)
    assert counted.input_tokens == msg.usage.input_tokens > 0


async def test_bad_request(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(model=MODEL, max_tokens=0, messages=USER)
    assert exc.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert REQUEST_ID.match(exc.value.body["request_id"])  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=[])
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "system", "content": "x"}])  # type: ignore[list-item,misc]
    with pytest.raises(anthropic.BadRequestError, match="not found"):
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=USER, tools=[SCENE_TOOL], tool_choice={"type": "tool", "name": "nope"}  # type: ignore[list-item]
        )


async def test_missing_api_key(sim_url: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as raw:
        resp = await raw.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": USER})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert REQUEST_ID.match(resp.headers["request-id"])


async def test_healthz(sim_url: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as raw:
        resp = await raw.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def _fault(name: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 20, "messages": USER, "extra_headers": {"x-sim-fault": name}}


async def test_fault_rate_limit(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as exc:
        await client.messages.create(**_fault("rate_limit"))
    assert exc.value.response.headers["retry-after"] == "1"
    assert exc.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert REQUEST_ID.match(exc.value.request_id or "")


async def test_fault_server_error(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as exc:
        await client.messages.create(**_fault("server_error"))
    assert exc.value.status_code == 500 and exc.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_fault_overloaded(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as exc:
        await client.messages.create(**_fault("overloaded"))
    assert exc.value.status_code == 529 and isinstance(exc.value, anthropic.OverloadedError)
    assert exc.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_fault_slow(client: anthropic.AsyncAnthropic) -> None:
    started = time.monotonic()
    msg = await client.messages.create(**_fault("slow:300"))
    assert time.monotonic() - started >= 0.3
    assert msg.content[0].type == "text"


async def test_fault_hang(client: anthropic.AsyncAnthropic) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.5).messages.create(**_fault("hang"))
    assert time.monotonic() - started < 3


async def test_fault_bad_schema(client: anthropic.AsyncAnthropic) -> None:
    msg = await client.messages.create(
        model=MODEL, max_tokens=4000, messages=USER, tools=[SCENE_TOOL], tool_choice=FORCED,  # type: ignore[list-item,arg-type]
        extra_headers={"x-sim-fault": "bad_schema"},
    )
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens >= 1
    assert schema_errors(msg.content[0].input, SCENE_SCHEMA) != []  # type: ignore[union-attr]
    text = await client.messages.create(**_fault("bad_schema"))
    assert text.content[0].text == ""  # type: ignore[union-attr]


async def test_fault_input_tokens_reports_a_bigger_bill(client: anthropic.AsyncAnthropic) -> None:
    plain = await client.messages.create(model=MODEL, max_tokens=20, messages=USER)
    billed = await client.messages.create(**_fault("input_tokens:2000000"))
    assert billed.usage.input_tokens == 2_000_000 and plain.usage.input_tokens < 100
    assert billed.content == plain.content


async def test_unknown_fault(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="unknown fault"):
        await client.messages.create(**_fault("explode"))


def _attempt(spec: str, attempt: int) -> dict[str, Any]:
    """A small request whose attempt number is set as a client with its own retry loop sets it."""
    return {"model": MODEL, "max_tokens": 5, "messages": USER,
            "extra_headers": {"x-sim-fault": spec, "x-stainless-retry-count": str(attempt)}}


async def test_fault_only_first_k_attempts(client: anthropic.AsyncAnthropic) -> None:
    """`<fault>*K` fails attempts 0..K-1 and answers normally from attempt K on; a request without an attempt
    number is always a first try, so it always fails."""
    for spec, error in (("rate_limit*2", anthropic.RateLimitError), ("overloaded*2", anthropic.OverloadedError),
                        ("server_error*2", anthropic.InternalServerError)):
        for attempt in (0, 1):
            with pytest.raises(error):
                await client.messages.create(**_attempt(spec, attempt))
        for attempt in (2, 3):
            ok = await client.messages.create(**_attempt(spec, attempt))
            assert ok.stop_reason in ("end_turn", "max_tokens"), spec
        with pytest.raises(error):
            await client.messages.create(**_fault(spec))
    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.5).messages.create(**_attempt("hang*1", 0))
    assert (await client.messages.create(**_attempt("hang*1", 1))).content


async def test_fault_retry_after_headers(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(**_fault("rate_limit,retry_after:30"))
    assert limited.value.response.headers["retry-after"] == "30"
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await client.messages.create(**_fault("overloaded"))
    assert "retry-after" not in overloaded.value.response.headers  # as the real API's 529s
    with pytest.raises(anthropic.OverloadedError) as hinted:
        await client.messages.create(**_fault("overloaded,retry_after_ms:1500"))
    assert hinted.value.response.headers["retry-after-ms"] == "1500"
    assert hinted.value.response.headers["retry-after"] == "2"


async def test_tagged_attempts_are_recorded(client: anthropic.AsyncAnthropic, sim_url: str) -> None:
    tag = f"t{random.randrange(10**9)}"
    for attempt in (0, 1):
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(**_attempt(f"rate_limit*5,tag:{tag}", attempt))
    async with httpx.AsyncClient(base_url=sim_url) as http:
        recorded = (await http.get("/_sim/attempts", params={"tag": tag})).json()["attempts"]
        assert [a["attempt"] for a in recorded] == [0, 1]
        assert recorded[0]["at"] <= recorded[1]["at"]
        assert (await http.get("/_sim/attempts", params={"tag": "other"})).json()["attempts"] == []


async def test_startup_fault_and_header_override(start_simulator: Any) -> None:
    with start_simulator(SimulatorSettings(fault="overloaded")) as url:
        async with anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as sdk:
            with pytest.raises(anthropic.OverloadedError):
                await sdk.messages.create(model=MODEL, max_tokens=5, messages=USER)
            ok = await sdk.messages.create(**_fault("none"))
            assert ok.stop_reason in ("end_turn", "max_tokens")


# --- unit level -----------------------------------------------------------------------------------------


class Beat(BaseModel):
    character: str
    dialogue: str
    parenthetical: str | None = None


class Scene(BaseModel):
    heading: str
    description: str = Field(min_length=10)
    beats: list[Beat] = Field(min_length=1, max_length=6)
    act: int = Field(ge=1, le=3)


class Outline(BaseModel):
    title: str
    scenes: list[Scene]


def test_pydantic_schema_with_refs_round_trips() -> None:
    schema = Outline.model_json_schema()
    for seed in range(20):
        value = generate_input(schema, random.Random(seed))
        assert schema_errors(value, schema) == []
        Outline.model_validate(value)
    assert len(generate_input(schema, random.Random(0))["scenes"]) == 3  # unbounded arrays get 3 items


def test_bad_input_always_invalid() -> None:
    for seed in range(20):
        assert schema_errors(generate_bad_input(SCENE_SCHEMA, random.Random(seed)), SCENE_SCHEMA) != []


def test_count_tokens_rule() -> None:
    assert count_tokens("") == 1 and count_tokens("abcd") == 1 and count_tokens("abcde") == 2


def test_fault_grammar() -> None:
    assert parse_fault("").active is False and parse_fault("none").active is False
    assert parse_fault("slow:250").slow_ms == 250
    combined = parse_fault("slow:10, bad_schema")
    assert combined.slow_ms == 10 and combined.bad_schema
    limited = parse_fault("rate_limit*2, retry_after:3, tag:abc")
    assert limited.error == "rate_limit" and limited.limits == (("error", 2),) and limited.tag == "abc"
    assert limited.for_attempt(1).error == "rate_limit" and limited.for_attempt(2).error is None
    assert parse_fault("slow:10*1,bad_schema").for_attempt(1) == parse_fault("bad_schema")
    assert parse_fault("input_tokens:7").input_tokens == 7 and parse_fault("input_tokens:7").active
    for bad in ("slow:", "slow:-1", "nope", "rate_limit,overloaded", "rate_limit*0", "rate_limit*x", "hang*",
                "retry_after:x", "retry_after:1*2", "tag:", "tag:has space", "retry_after_ms:-5", "input_tokens:x",
                "input_tokens:5*2"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)
    with pytest.raises(ValueError):
        SimulatorSettings(fault="nope")
