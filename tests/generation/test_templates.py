"""Built-in story templates load and validate; ids and custom acts are checked strictly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.generation.templates import (
    TEMPLATE_ID_PATTERN,
    InvalidCustomTemplate,
    InvalidTemplateId,
    StoryTemplate,
    TemplateError,
    TemplateNotFound,
    TemplateStore,
    default_store,
    validate_custom_acts,
)

EXPECTED = {
    "save-the-cat": 15,
    "hero-journey": 12,
    "three-act": 3,
    "seven-point": 7,
    "kishotenketsu": 4,
    "tv-four-act": 6,
    "harmon-story-circle": 8,
    "fichtean-curve": 4,
}
ACT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@pytest.fixture(scope="module")
def store() -> TemplateStore:
    return TemplateStore()


def test_all_templates_present_and_sorted(store: TemplateStore) -> None:
    ids = [template.id for template in store.list()]
    assert ids == sorted(EXPECTED)
    assert default_store().ids() == ids


@pytest.mark.parametrize(("template_id", "act_count"), sorted(EXPECTED.items()))
def test_template_loads_with_valid_unique_acts(store: TemplateStore, template_id: str, act_count: int) -> None:
    template = store.get(template_id)
    assert isinstance(template, StoryTemplate)
    assert template.id == template_id
    assert re.fullmatch(TEMPLATE_ID_PATTERN, template.id)
    assert template.name and template.description
    assert len(template.acts) == act_count
    keys = [act.key for act in template.acts]
    assert len(set(keys)) == len(keys)
    for act in template.acts:
        assert ACT_KEY.fullmatch(act.key)
        assert act.name.strip() == act.name and act.name
        assert len(act.description) >= 30, act.key


def test_specific_structures(store: TemplateStore) -> None:
    assert [a.key for a in store.get("three-act").acts] == ["setup", "confrontation", "resolution"]
    assert store.get("kishotenketsu").name == "Kishōtenketsu"
    assert [a.key for a in store.get("seven-point").acts] == [
        "hook", "plot_turn_1", "pinch_1", "midpoint", "pinch_2", "plot_turn_2", "resolution",
    ]
    assert store.get("hero-journey").acts[0].name == "The Ordinary World"
    assert store.get("save-the-cat").acts[-1].key == "final_image"


def test_unknown_template(store: TemplateStore) -> None:
    with pytest.raises(TemplateNotFound):
        store.get("snowflake-method")
    assert "snowflake-method" not in store
    assert "three-act" in store


@pytest.mark.parametrize("bad", ["../etc", "Hero Journey", "", "three-act\n", "-leading", "x" * 65, "a/b"])
def test_malformed_template_id(store: TemplateStore, bad: str) -> None:
    with pytest.raises(InvalidTemplateId):
        store.get(bad)
    assert issubclass(InvalidTemplateId, TemplateError)
    assert issubclass(TemplateNotFound, TemplateError)


def _write(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / name).write_text(json.dumps(data), encoding="utf-8")


def _template(id: str = "mine", acts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": id,
        "name": "Mine",
        "description": "A test template.",
        "acts": acts if acts is not None else [{"key": "one", "name": "One", "description": "First."}],
    }


def test_store_from_directory(tmp_path: Path) -> None:
    _write(tmp_path, "mine.json", _template())
    (tmp_path / "README.txt").write_text("ignored")
    assert [t.id for t in TemplateStore(tmp_path).list()] == ["mine"]


@pytest.mark.parametrize(
    ("file_name", "data"),
    [
        ("mine.json", _template(acts=[{"key": "a", "name": "A"}, {"key": "a", "name": "B"}])),
        ("Bad Id.json", _template(id="Bad Id")),
        ("other.json", _template(id="mine")),
        ("mine.json", _template(acts=[{"key": "Not-Snake", "name": "A"}])),
        ("mine.json", _template(acts=[])),
        ("mine.json", {**_template(), "extra": 1}),
    ],
)
def test_bad_template_files_fail_at_load(tmp_path: Path, file_name: str, data: dict[str, Any]) -> None:
    _write(tmp_path, file_name, data)
    with pytest.raises(TemplateError):
        TemplateStore(tmp_path)


def test_broken_json_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "mine.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"mine\.json"):
        TemplateStore(tmp_path)


def test_validate_custom_acts_ok() -> None:
    acts = validate_custom_acts([
        {"key": "cold_open", "name": " Cold Open ", "description": "We meet Maya mid-heist."},
        {"key": "act_2", "name": "Fallout"},
    ])
    assert [(a.key, a.name, a.description) for a in acts] == [
        ("cold_open", "Cold Open", "We meet Maya mid-heist."),
        ("act_2", "Fallout", ""),
    ]


def _act(n: int) -> dict[str, Any]:
    return {"key": f"act_{n}", "name": f"Act {n}", "description": ""}


@pytest.mark.parametrize(
    ("acts", "message"),
    [
        ([], "1 to 24"),
        ([_act(n) for n in range(25)], "1 to 24"),
        ("not a list", "must be a list"),
        ([_act(1), "oops"], "act 2"),
        ([{"key": "Bad Key", "name": "X"}], r"act 1: key: must match"),
        ([{"key": "1st", "name": "X"}], "act 1: key"),
        ([{"key": "k" * 65, "name": "X"}], "act 1: key"),
        ([_act(1), {"key": "act_1", "name": "Again"}], "act 2: duplicate act key 'act_1' .*act 1"),
        ([{"key": "a", "name": ""}], "act 1: name"),
        ([{"key": "a", "name": "   "}], "act 1: name"),
        ([{"key": "a", "name": "n" * 201}], "act 1: name"),
        ([{"key": "a", "name": "A", "description": "d" * 2001}], "act 1: description"),
        ([{"key": "a"}], "act 1: name"),
        ([{"key": "a", "name": "A", "beats": 3}], "act 1: beats: unexpected field"),
    ],
)
def test_validate_custom_acts_errors(acts: Any, message: str) -> None:
    with pytest.raises(InvalidCustomTemplate, match=message):
        validate_custom_acts(acts)


def test_custom_acts_limits_inclusive() -> None:
    assert len(validate_custom_acts([_act(n) for n in range(24)])) == 24
    act = validate_custom_acts([{"key": "k" * 64, "name": "n" * 200, "description": "d" * 2000}])[0]
    assert len(act.key) == 64
