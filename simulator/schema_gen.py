"""Generate tool `input` values from a JSON Schema, and deliberately broken ones for `bad_schema`.

The simulator knows nothing about our prompts: a forced tool call is answered purely from the tool's
`input_schema`. Supported: object (properties / required / additionalProperties), array (items /
minItems / maxItems / uniqueItems), string (enum / const / minLength / maxLength / a few formats),
integer and number (minimum / maximum / exclusive bounds / multipleOf), boolean, null, type lists,
`$ref` into `$defs` / `definitions`, and anyOf / oneOf / allOf (as pydantic emits them). Strings are
chosen by property name so the output reads like a film script.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from simulator import prose

DEFAULT_ARRAY_ITEMS = 3
MAX_DEPTH = 12  # guards against self-referential $ref schemas

Schema = dict[str, Any]

# property-name fragment -> string generator; the first match wins, so more specific names come first.
_NAMED_STRINGS: tuple[tuple[re.Pattern[str], Callable[[random.Random], str]], ...] = tuple(
    (re.compile(pattern), func)
    for pattern, func in (
        (r"slug|heading|scene_?header|location_?line", prose.slugline),
        (r"character|speaker|cue", prose.character),
        (r"parenthetical", lambda rng: rng.choice(prose.PARENTHETICALS)),
        (r"dialog|(^|_)lines?($|_)|quote", prose.dialogue_line),
        (r"action|direction|beat", prose.action_line),
        (r"genre", lambda rng: rng.choice(prose.GENRES)),
        (r"tone|mood", lambda rng: rng.choice(prose.TONES)),
        (r"location|setting|place", lambda rng: rng.choice(prose.LOCATIONS).title()),
        (r"logline|premise|pitch", prose.sentence),
        (r"desc|summary|synopsis|overview|note|text|content|body|prose|story|plot", prose.summary),
        (r"name|title|label", prose.title),
    )
)


@lru_cache(maxsize=1024)
def _string_generator(prop_name: str) -> Callable[[random.Random], str]:
    """Pick the generator for a property name once; names repeat across requests."""
    lowered = prop_name.lower()
    for pattern, func in _NAMED_STRINGS:
        if pattern.search(lowered):
            return func
    return prose.summary


def _resolve(schema: Any, root: Schema) -> Schema:
    """Follow local `$ref`s (``#/$defs/X``, ``#/definitions/X``); unknown refs become `{}`."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < MAX_DEPTH:
        ref = schema["$ref"]
        target: Any = root
        if isinstance(ref, str) and ref.startswith("#"):
            for part in ref.lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        else:
            target = None
        schema = target if isinstance(target, dict) else {}
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _schema_type(schema: Schema) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema:
        return "number"
    return "string"


class SchemaValueGenerator:
    """Generates one value for a schema; holds the root so `$ref`s resolve."""

    def __init__(self, root: Schema, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def generate(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        schema = _resolve(schema, self.root)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                resolved = [_resolve(o, self.root) for o in options]
                non_null = [o for o in resolved if o.get("type") != "null"] or resolved
                return self.generate(non_null[0], name, depth + 1)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
            for part in all_of:
                part = _resolve(part, self.root)
                for key, value in part.items():
                    if key in ("properties",) and isinstance(value, dict):
                        merged.setdefault("properties", {}).update(value)
                    elif key == "required" and isinstance(value, list):
                        merged["required"] = list(merged.get("required", [])) + value
                    else:
                        merged.setdefault(key, value)
            return self.generate(merged, name, depth + 1)

        kind = _schema_type(schema)
        if depth > MAX_DEPTH:
            return {} if kind == "object" else [] if kind == "array" else None
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    def _object(self, schema: Schema, depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        result: dict[str, Any] = {}
        if isinstance(props, dict):
            for key, sub in props.items():
                result[key] = self.generate(sub, key, depth + 1)
        extra = schema.get("additionalProperties")
        if not result and isinstance(extra, dict):
            # a free-form map such as {"additionalProperties": {"type": "string"}}
            for _ in range(self.rng.randint(1, 3)):
                key = prose.character(self.rng).lower().replace(" ", "_").replace(".", "")
                result[key] = self.generate(extra, key, depth + 1)
        return result

    def _array(self, schema: Schema, name: str, depth: int) -> list[Any]:
        low = schema.get("minItems")
        high = schema.get("maxItems")
        low = low if isinstance(low, int) and low >= 0 else 0
        if isinstance(high, int) and high >= low:
            count = self.rng.randint(max(low, min(1, high)), high)
        else:
            count = max(low, DEFAULT_ARRAY_ITEMS)
        items = schema.get("items", {})
        prefix = schema.get("prefixItems")
        item_name = name.removesuffix("s")
        values: list[Any] = []
        unique = bool(schema.get("uniqueItems"))
        for index in range(count):
            sub = prefix[index] if isinstance(prefix, list) and index < len(prefix) else items
            value = self.generate(sub, item_name, depth + 1)
            attempts = 0
            while unique and value in values and attempts < 8:
                value = self.generate(sub, item_name, depth + 1)
                attempts += 1
            values.append(value)
        return values

    def _string(self, schema: Schema, name: str) -> str:
        fmt = schema.get("format")
        rng = self.rng
        if fmt == "date-time":
            value = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
        elif fmt == "date":
            value = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "email":
            value = f"{rng.choice(prose.CHARACTERS).split()[-1].lower().strip('.')}@example.com"
        elif fmt in ("uri", "url"):
            value = f"https://example.com/scripts/{rng.randrange(16**8):08x}"
        elif fmt == "uuid":
            h = f"{rng.getrandbits(128):032x}"
            value = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        else:
            value = _string_generator(name)(rng)
        min_len = schema.get("minLength")
        max_len = schema.get("maxLength")
        if isinstance(min_len, int):
            while len(value) < min_len:
                value = f"{value} {prose.action_line(rng)}"
        if isinstance(max_len, int) and len(value) > max_len:
            value = value[:max_len].rstrip() if max_len > 0 else ""
            if isinstance(min_len, int) and len(value) < min_len:  # rstrip ate into the minimum
                value = value.ljust(min_len, ".")
        return value

    def _bounds(self, schema: Schema, step: float) -> tuple[float, float]:
        """Inclusive [low, high] from minimum / maximum / exclusive bounds, with a small default range."""

        def number(key: str) -> float | None:
            value = schema.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        low, high = number("minimum"), number("maximum")
        ex_low, ex_high = number("exclusiveMinimum"), number("exclusiveMaximum")
        if ex_low is not None:
            low = ex_low + step if low is None else max(low, ex_low + step)
        if ex_high is not None:
            high = ex_high - step if high is None else min(high, ex_high - step)
        if low is None and high is None:
            return 1.0, 10.0
        if low is None:
            assert high is not None
            return min(1.0, high), high
        if high is None:
            high = max(low, 1.0) * 10 if low > 0 else low + 100
        return low, max(low, high)

    def _integer(self, schema: Schema) -> int:
        low, high = self._bounds(schema, 1)
        value = self.rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int) and multiple > 0:
            rounded = math.ceil(value / multiple) * multiple
            value = rounded if rounded <= high else math.floor(value / multiple) * multiple
        return value

    def _number(self, schema: Schema) -> float:
        low, high = self._bounds(schema, 0.01)
        value = round(self.rng.uniform(low, high), 2)
        return min(max(value, low), high)


def generate_input(schema: Any, rng: random.Random) -> dict[str, Any]:
    """A value for a tool's `input_schema`; always an object, as the Messages API requires."""
    root = schema if isinstance(schema, dict) else {}
    value = SchemaValueGenerator(root, rng).generate(root)
    return value if isinstance(value, dict) else {"value": value}


_WRONG_TYPE: dict[str, Any] = {
    "string": 12345,
    "integer": "not-a-number",
    "number": "not-a-number",
    "boolean": "maybe",
    "array": "not-an-array",
    "object": ["not", "an", "object"],
    "null": "not-null",
}


def generate_bad_input(schema: Any, rng: random.Random) -> dict[str, Any]:
    """A tool input that violates `schema`: required keys dropped and the remaining values mistyped.

    Used by the `bad_schema` fault so callers can exercise their validation / retry paths.
    """
    root = schema if isinstance(schema, dict) else {}
    resolved = _resolve(root, root)
    good = generate_input(root, rng)
    raw_props = resolved.get("properties")
    props: Schema = raw_props if isinstance(raw_props, dict) else {}
    required = [k for k in resolved.get("required", []) if isinstance(k, str)]
    bad: dict[str, Any] = {}
    for key in good:
        if key in required:
            continue  # missing required keys
        sub = _resolve(props.get(key, {}), root)
        bad[key] = _WRONG_TYPE.get(_schema_type(sub), 12345)
    if not required and not bad:
        # nothing to drop or mistype: add an unexpected key (violates additionalProperties: false)
        bad["unexpected_field"] = 12345
    return bad
