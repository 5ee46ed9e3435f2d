"""What Claude must answer, as pydantic models: each kind's forced tool schema is generated from its model
(`tool`), and the answer is validated by the same model (`parse`), so the schema Claude sees and the check
its answer passes cannot disagree. The same models type the saved project (services/generation/project.py).

A model that depends on the call (the acts of a template, a desired count) is built per plan; its bounds are
written once here (`COUNTS`), and the prompts quote them from here too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue


class InvalidOutput(ValueError):
    """The model's structured answer does not match the schema we asked for."""


def text(max_length: int, min_length: int = 1) -> Any:
    """A string that is not blank once stripped, within these lengths (the schema says the same)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)]


CharacterName = text(80)


class Output(BaseModel):
    """Strict: exactly the fields the schema names, of the types it names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Act(Output):
    """One act of the structure: what happens in it."""

    name: text(200) = Field(description="A title for what happens in this act")  # type: ignore[valid-type]
    description: text(4000) = Field(description="A paragraph describing the act's events")  # type: ignore[valid-type]


class Scene(Output):
    slugline: text(200, 3) = Field(description="Scene heading, e.g. 'INT. WAREHOUSE - NIGHT'")  # type: ignore[valid-type]
    title: text(200)  # type: ignore[valid-type]
    description: text(4000) = Field(description="What happens in the scene, as screenplay action")  # type: ignore[valid-type]
    characters: list[CharacterName] = Field(min_length=1, max_length=12)  # type: ignore[valid-type]


class Character(Output):
    """A character's profile, so every later scene and line of dialogue keeps them consistent."""

    name: CharacterName = Field(description="As the script writes it, in capitals")  # type: ignore[valid-type]
    role: text(200) = Field(description="Their part in the story, e.g. protagonist, mentor, antagonist")  # type: ignore[valid-type]
    want: text(1000) = Field(description="What they consciously pursue")  # type: ignore[valid-type]
    need: text(1000) = Field(description="What they truly need, often unknown to them")  # type: ignore[valid-type]
    arc: text(2000) = Field(description="How they change from the first act to the last")  # type: ignore[valid-type]
    voice: text(1000) = Field(description="How they speak: rhythm, vocabulary, tics")  # type: ignore[valid-type]


class Characters(Output):
    characters: list[Character] = Field(min_length=1, max_length=12)


#: (fewest, most) items a list answer may have when the caller named no count; a named count is exact and
#: at most MAX_COUNT.
COUNTS = {"plot_points": (3, 8), "scenes": (2, 5)}
MAX_COUNT = 12


def bounds(what: str, count: int | None) -> tuple[int, int]:
    return (count, count) if count else COUNTS[what]


def how_many(what: str, count: int | None) -> str:
    """The count as a prompt says it ("exactly 4", "3 to 8")."""
    low, high = bounds(what, count)
    return f"exactly {low}" if low == high else f"{low} to {high}"


def structure(act_keys: Sequence[str]) -> type[Output]:
    """One required entry per act key: the schema itself says "each act exactly once"."""
    return _structure(tuple(act_keys))


def plot_points(count: int | None) -> type[Output]:
    return _plot_points(count)


def scenes(act_keys: Sequence[str], count: int | None) -> type[Output]:
    return _scenes(tuple(act_keys), count)


# Building a model (and its schema) costs far more than the call that uses it, and a template's acts and a
# count come back again and again: each shape is built once.
@functools.lru_cache(maxsize=256)
def _structure(act_keys: tuple[str, ...]) -> type[Output]:
    fields: dict[str, Any] = {f"act_{i}": (Act, Field(alias=key)) for i, key in enumerate(act_keys)}
    return create_model("Structure", __base__=Output, **fields)


@functools.lru_cache(maxsize=32)
def _plot_points(count: int | None) -> type[Output]:
    low, high = bounds("plot_points", count)
    point: Any = text(2000)
    return create_model("PlotPoints", __base__=Output,
                        plot_points=(list[point], Field(min_length=low, max_length=high)))


@functools.lru_cache(maxsize=512)
def _scenes(act_keys: tuple[str, ...], count: int | None) -> type[Output]:
    low, high = bounds("scenes", count)
    fields: dict[str, Any] = {f"act_{i}": (list[Scene], Field(alias=key, min_length=low, max_length=high))
                              for i, key in enumerate(act_keys)}
    return create_model("Scenes", __base__=Output, **fields)


class _NoTitles(GenerateJsonSchema):
    """Pydantic's schema without its `title`s: Claude needs none, and every byte counts toward the hold."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: Any, mode: Any = "validation") -> JsonSchemaValue:
        generated = super().generate(schema, mode)
        return _without_titles(generated)


def _without_titles(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_titles(v) for k, v in value.items() if k != "title" or not isinstance(v, str)}
    if isinstance(value, list):
        return [_without_titles(v) for v in value]
    return value


@functools.lru_cache(maxsize=1024)
def schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, by alias (the act keys), as the tool's input_schema (built once per model;
    read-only)."""
    return model.model_json_schema(by_alias=True, schema_generator=_NoTitles)


def tool(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"name": name, "description": description, "input_schema": schema(model)}


@functools.lru_cache(maxsize=1024)
def tool_json(name: str, description: str, model: type[BaseModel]) -> str:
    """The tool as the JSON text the plan carries (and the worst case counts)."""
    return json.dumps(tool(name, description, model))


def parse(model: type[BaseModel], data: Any) -> Any:
    """The answer as the model (raises InvalidOutput naming the first place it breaks the schema)."""
    try:
        return model.model_validate(data, by_alias=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "input"
        raise InvalidOutput(f"model output failed the schema at {where}: {first.get('msg')}") from exc


def as_keyed(answer: BaseModel) -> dict[str, Any]:
    """A per-act answer (Structure, Scenes) as {act key: value}, in act order."""
    return {k: v for k, v in answer.model_dump(by_alias=True, mode="json").items()}


def dialogue(text_answer: str) -> str:
    """Dialogue is free text in screenplay form (no tool): only an empty answer is refused."""
    cleaned = text_answer.strip()
    if len(cleaned) < 10:
        raise InvalidOutput("model returned no dialogue")
    return cleaned + "\n"
