"""Structured output: one forced tool per kind, its JSON schema, and the validation of what comes back.

Claude is asked to call the tool (`tool_choice={"type": "tool", "name": ...}`), so the answer is JSON
that should match the schema; `validate_*` re-checks it strictly, because a model can still break
the schema, and an invalid result is a failed call (nothing saved, nothing charged to the user).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_SCENES_PER_ACT = 12
MAX_PLOT_POINTS = 20


class InvalidOutput(ValueError):
    """The model's structured answer does not match the schema we asked for."""


SCENE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "slugline": {"type": "string", "minLength": 3, "maxLength": 200,
                     "description": "Scene heading, e.g. 'INT. WAREHOUSE - NIGHT'"},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "minLength": 1, "maxLength": 4000,
                        "description": "What happens in the scene, as screenplay action"},
        "characters": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 80},
                       "minItems": 1, "maxItems": 12},
    },
    "required": ["slugline", "title", "description", "characters"],
    "additionalProperties": False,
}


def structure_tool(act_keys: list[str]) -> dict[str, Any]:
    """One property per act key, all required: the schema itself says "each act exactly once"."""
    act = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200,
                     "description": "A title for what happens in this act"},
            "description": {"type": "string", "minLength": 1, "maxLength": 4000,
                            "description": "A paragraph describing the act's events"},
        },
        "required": ["name", "description"],
        "additionalProperties": False,
    }
    return {
        "name": "record_structure",
        "description": "Record the story's structure: one entry per act of the template, keyed by act key.",
        "input_schema": {
            "type": "object",
            "properties": {key: act for key in act_keys},
            "required": act_keys,
            "additionalProperties": False,
        },
    }


def plot_points_tool(count: int | None) -> dict[str, Any]:
    return {
        "name": "record_plot_points",
        "description": "Record the plot points of one act, in story order.",
        "input_schema": {
            "type": "object",
            "properties": {
                "plot_points": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "minItems": count or 3,
                    "maxItems": count or 8,
                }
            },
            "required": ["plot_points"],
            "additionalProperties": False,
        },
    }


def scenes_tool(act_keys: list[str], count: int | None) -> dict[str, Any]:
    per_act = {"type": "array", "items": SCENE_SCHEMA, "minItems": count or 2, "maxItems": count or 5}
    return {
        "name": "record_scenes",
        "description": "Record the scenes of each requested act, in story order.",
        "input_schema": {
            "type": "object",
            "properties": {key: per_act for key in act_keys},
            "required": act_keys,
            "additionalProperties": False,
        },
    }


def scene_tool() -> dict[str, Any]:
    return {
        "name": "record_scene",
        "description": "Record one new scene for the act.",
        "input_schema": SCENE_SCHEMA,
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Scene(_Strict):
    slugline: str = Field(min_length=3, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    characters: list[str] = Field(min_length=1, max_length=12)

    @field_validator("slugline", "title", "description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class _Act(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)


class _PlotPoints(_Strict):
    plot_points: list[str] = Field(min_length=1, max_length=MAX_PLOT_POINTS)


def _parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "input"
        raise InvalidOutput(f"model output failed the schema at {where}: {first.get('msg')}") from exc


def validate_structure(data: Any, act_keys: list[str]) -> dict[str, dict[str, str]]:
    if not isinstance(data, dict) or sorted(data) != sorted(act_keys):
        raise InvalidOutput("model output does not cover each act exactly once")
    result: dict[str, dict[str, str]] = {}
    for key in act_keys:
        act: _Act = _parse(_Act, data[key])
        if not act.name.strip() or not act.description.strip():
            raise InvalidOutput(f"model output has a blank name or description for act {key}")
        result[key] = {"name": act.name.strip(), "description": act.description.strip()}
    return result


def validate_plot_points(data: Any, count: int | None) -> list[str]:
    parsed: _PlotPoints = _parse(_PlotPoints, data)
    points = [p.strip() for p in parsed.plot_points]
    if any(not p for p in points):
        raise InvalidOutput("model output has an empty plot point")
    if count and len(points) != count:
        raise InvalidOutput(f"model output has {len(points)} plot points, {count} were asked for")
    return points


def validate_scenes(data: Any, act_keys: list[str], count: int | None) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(data, dict) or sorted(data) != sorted(act_keys):
        raise InvalidOutput("model output does not cover each requested act exactly once")
    result: dict[str, list[dict[str, Any]]] = {}
    for key in act_keys:
        items = data[key]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_SCENES_PER_ACT:
            raise InvalidOutput(f"model output for act {key} is not a list of 1-{MAX_SCENES_PER_ACT} scenes")
        if count and len(items) != count:
            raise InvalidOutput(f"model output has {len(items)} scenes for {key}, {count} were asked for")
        result[key] = [validate_scene(item) for item in items]
    return result


def validate_scene(data: Any) -> dict[str, Any]:
    scene: Scene = _parse(Scene, data)
    return scene.model_dump()


def validate_dialogue(text: str) -> str:
    cleaned = text.strip()
    if len(cleaned) < 10:
        raise InvalidOutput("model returned no dialogue")
    return cleaned + "\n"
