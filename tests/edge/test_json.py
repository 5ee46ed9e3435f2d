"""edge.json: Decimal credits as exact JSON numbers, and a service's JSON object extended in place."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from edge.json import dumps, extend_object


def test_decimals_render_as_exact_numbers() -> None:
    out = dumps({"a": Decimal("100.0000"), "b": [Decimal("2.4300"), Decimal("0.0001")]})
    assert out == b'{"a":100,"b":[2.43,0.0001]}'


def test_extend_object_appends_members_after_the_original_ones() -> None:
    original = json.dumps({"projectPath": "p-1", "scene": {"title": "Café", "lines": ["a", "b"]}}, ensure_ascii=False)
    out = extend_object(original, {"usage": {"credits_charged": Decimal("1.5000")}, "requestId": "req_1"})
    decoded = json.loads(out)
    assert list(decoded) == ["projectPath", "scene", "usage", "requestId"]
    assert decoded["scene"] == {"title": "Café", "lines": ["a", "b"]}
    assert decoded["usage"] == {"credits_charged": 1.5}
    assert b'"credits_charged":1.5' in out


@pytest.mark.parametrize("empty", ["{}", "{ }", " {}\n"])
def test_extend_an_empty_object(empty: str) -> None:
    assert json.loads(extend_object(empty, {"x": 1})) == {"x": 1}


@pytest.mark.parametrize("not_object", ["[]", "", "1", '"}"x', '"a}"'])
def test_extend_refuses_what_is_not_an_object(not_object: str) -> None:
    with pytest.raises(ValueError):
        extend_object(not_object, {"x": 1})
