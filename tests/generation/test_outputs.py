"""Each kind's tool schema (what Claude is told to answer) agrees with its output model (what the answer is
checked with), for every kind and the shapes its calls take: instances generated from the schema are valid
under JSON Schema and accepted by the model; instances that break the schema are refused by both; and the
model refuses exactly what the bounds say, one item over or under."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from protos import generation_pb2
from services.generation import outputs
from services.generation.kinds import KINDS
from services.generation.outputs import InvalidOutput
from services.generation.templates import TemplateStore
from simulator.schema_gen import generate_bad_input, generate_input

TEMPLATE_ACTS = [[act.key for act in template.acts] for template in TemplateStore().list()]
SAMPLES = 25

#: (kind, its own request, the acts a draft of it covers): the shapes of call each kind's model is built for.
SHAPES: list[tuple[str, Any, list[str]]] = [
    *[("structure", generation_pb2.StructureRequest(), acts) for acts in TEMPLATE_ACTS],
    ("structure_custom", generation_pb2.StructureCustomRequest(), ["copy", "json", "model_config"]),
    ("plot_points", generation_pb2.PlotPointsRequest(), ["setup"]),
    ("plot_points", generation_pb2.PlotPointsRequest(desired_count=4), ["setup"]),
    ("scenes", generation_pb2.ScenesRequest(), ["setup", "confrontation", "resolution"]),
    ("scenes", generation_pb2.ScenesRequest(desired_count=3), ["setup"]),
    ("scene", generation_pb2.SceneRequest(), ["setup"]),
    ("characters", generation_pb2.CharactersRequest(), []),
]


def test_every_kind_with_a_tool_has_a_shape_here() -> None:
    assert {name for name, kind in KINDS.items() if kind.tool is not None} == {name for name, _, _ in SHAPES}


def _model_and_schema(name: str, own: Any, acts: list[str]) -> tuple[type[BaseModel], dict[str, Any]]:
    kind = KINDS[name]
    model = kind.output(own, acts)
    assert model is not None and kind.tool is not None
    return model, outputs.tool(kind.tool.name, kind.tool.description, model)["input_schema"]


def _accepts(model: type[BaseModel], value: Any) -> bool:
    try:
        outputs.parse(model, value)
    except InvalidOutput:
        return False
    return True


@pytest.mark.parametrize(("name", "own", "acts"), SHAPES, ids=[f"{n}-{len(a)}acts-{i}" for i, (n, _, a) in
                                                              enumerate(SHAPES)])
def test_the_schema_and_the_model_agree(name: str, own: Any, acts: list[str]) -> None:
    model, schema = _model_and_schema(name, own, acts)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for seed in range(SAMPLES):
        good = generate_input(schema, random.Random(seed))
        assert list(validator.iter_errors(good)) == [], json.dumps(good)[:300]
        assert _accepts(model, good), json.dumps(good)[:300]
        bad = generate_bad_input(schema, random.Random(seed))
        assert list(validator.iter_errors(bad)), json.dumps(bad)[:300]
        assert not _accepts(model, bad), json.dumps(bad)[:300]


@pytest.mark.parametrize(("name", "own", "low", "high"), [
    ("plot_points", generation_pb2.PlotPointsRequest(), 3, 8),
    ("plot_points", generation_pb2.PlotPointsRequest(desired_count=4), 4, 4),
    ("scenes", generation_pb2.ScenesRequest(), 2, 5),
    ("scenes", generation_pb2.ScenesRequest(desired_count=12), 12, 12),
])
def test_list_bounds_are_the_same_in_both(name: str, own: Any, low: int, high: int) -> None:
    model, schema = _model_and_schema(name, own, ["setup"])
    validator = Draft202012Validator(schema)
    scene = {"slugline": "INT. ROOM - DAY", "title": "T", "description": "D", "characters": ["ANA"]}
    item: Any = "A point." if name == "plot_points" else scene
    field = "plot_points" if name == "plot_points" else "setup"
    for size, fits in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
        value = {field: [item] * size}
        assert (not list(validator.iter_errors(value))) is fits, size
        assert _accepts(model, value) is fits, size


def test_a_character_name_over_80_characters_is_refused_by_both() -> None:
    schema = outputs.schema(outputs.Scene)
    scene = {"slugline": "INT. ROOM - DAY", "title": "T", "description": "D", "characters": ["A" * 81]}
    assert list(Draft202012Validator(schema).iter_errors(scene))
    assert not _accepts(outputs.Scene, scene)
    assert _accepts(outputs.Scene, {**scene, "characters": ["A" * 80]})
