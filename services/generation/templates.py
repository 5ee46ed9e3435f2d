"""Story templates (Save the Cat, Hero's Journey, ...) loaded from JSON data files.

Templates live as one JSON file per template in the sibling ``templates/`` folder so that writers
can review and edit the beat descriptions (which are fed to the model) without touching code.
Everything is validated once, at load time, so a broken data file fails fast at service start-up
instead of surfacing as a confusing generation error later.

Note: ``templates/`` deliberately has no ``__init__.py``. A regular package of that name would
shadow this module (``services.generation.templates``); as a namespace directory it is still
discovered by setuptools (``packages.find`` uses namespace discovery in ``pyproject.toml``), so
the ``"*.json"`` package-data rule ships the files.
"""

from __future__ import annotations

import builtins
import functools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TEMPLATE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""Template ids double as file names and URL path segments, hence the conservative charset."""

ACT_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
"""Act keys are used as dict keys in stored projects and in ``"{act_key}:{scene_index}"`` ids."""

MAX_CUSTOM_ACTS = 24
MAX_ACT_NAME_LENGTH = 200
MAX_ACT_DESCRIPTION_LENGTH = 2000

_TEMPLATE_ID_RE = re.compile(TEMPLATE_ID_PATTERN)


class TemplateError(Exception):
    """Base class for every template problem, so callers can map them to one API error family."""


class TemplateNotFound(TemplateError):
    """A well-formed template id that does not name a known template."""


class InvalidTemplateId(TemplateError):
    """A template id that can never be valid (e.g. path traversal attempts, spaces, empty)."""


class InvalidCustomTemplate(TemplateError):
    """User-supplied custom acts were rejected; the message names the offending act and field."""


class TemplateAct(BaseModel):
    """One act / beat / stage of a template; ``description`` is guidance for writer and model."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    key: str = Field(pattern=ACT_KEY_PATTERN)
    name: str = Field(min_length=1, max_length=MAX_ACT_NAME_LENGTH)
    description: str = Field(default="", max_length=MAX_ACT_DESCRIPTION_LENGTH)


def _duplicate_keys(acts: Iterable[TemplateAct]) -> list[str]:
    seen: set[str] = set()
    duplicates: list[str] = []
    for act in acts:
        if act.key in seen and act.key not in duplicates:
            duplicates.append(act.key)
        seen.add(act.key)
    return duplicates


class StoryTemplate(BaseModel):
    """A named, ordered list of acts. Act order is the order scenes are generated and exported."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    name: str = Field(min_length=1, max_length=MAX_ACT_NAME_LENGTH)
    description: str = Field(default="", max_length=MAX_ACT_DESCRIPTION_LENGTH)
    acts: list[TemplateAct] = Field(min_length=1, max_length=MAX_CUSTOM_ACTS)

    @field_validator("acts")
    @classmethod
    def _acts_have_unique_keys(cls, acts: list[TemplateAct]) -> list[TemplateAct]:
        # Act keys index structure/scenes/dialogue in stored projects; duplicates would merge acts.
        duplicates = _duplicate_keys(acts)
        if duplicates:
            raise ValueError(f"duplicate act keys: {', '.join(duplicates)}")
        return acts

    def act(self, key: str) -> TemplateAct | None:
        """Return the act with ``key`` or ``None``; convenient for building prompts per act."""
        return next((act for act in self.acts if act.key == key), None)


def is_valid_template_id(template_id: object) -> bool:
    """True if ``template_id`` is well-formed (not whether it exists). Uses fullmatch: ``$`` alone
    would accept a trailing newline."""
    return isinstance(template_id, str) and _TEMPLATE_ID_RE.fullmatch(template_id) is not None


def _default_directory() -> Traversable:
    # importlib.resources works for source checkouts, editable installs and zipped wheels alike.
    return resources.files("services.generation").joinpath("templates")


class TemplateStore:
    """All built-in templates, read and validated once at construction.

    Construction raises :class:`TemplateError` for any malformed file (bad JSON, schema error, bad id,
    duplicate act keys, id not matching the file name, duplicate ids), so a bad deploy fails at start-up.
    """

    def __init__(self, directory: Traversable | None = None) -> None:
        root = directory if directory is not None else _default_directory()
        templates: dict[str, StoryTemplate] = {}
        for entry in sorted(root.iterdir(), key=lambda item: item.name):
            if not entry.name.endswith(".json") or not entry.is_file():
                continue
            template = self._load_file(entry)
            if template.id in templates:
                raise TemplateError(f"duplicate template id {template.id!r} ({entry.name})")
            templates[template.id] = template
        self._templates = templates

    @staticmethod
    def _load_file(entry: Traversable) -> StoryTemplate:
        try:
            raw = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TemplateError(f"cannot read template file {entry.name}: {exc}") from exc
        try:
            template = StoryTemplate.model_validate(raw)
        except ValidationError as exc:
            raise TemplateError(f"invalid template file {entry.name}: {exc}") from exc
        expected_id = entry.name.removesuffix(".json")
        if template.id != expected_id:
            # The file name is the id users see in listings; keep the two from drifting apart.
            raise TemplateError(f"template file {entry.name} declares id {template.id!r}")
        return template

    def list(self) -> list[StoryTemplate]:
        """All templates sorted by id, for stable API listings."""
        return [self._templates[template_id] for template_id in sorted(self._templates)]

    def ids(self) -> builtins.list[str]:
        """Sorted template ids."""
        return sorted(self._templates)

    def get(self, template_id: str) -> StoryTemplate:
        """Look up a template; distinguishes malformed ids (client bug / probing) from unknown ones."""
        if not is_valid_template_id(template_id):
            raise InvalidTemplateId(f"invalid template id: {template_id!r}")
        try:
            return self._templates[template_id]
        except KeyError:
            raise TemplateNotFound(f"unknown template: {template_id!r}") from None

    def __contains__(self, template_id: object) -> bool:
        return is_valid_template_id(template_id) and template_id in self._templates

    def __len__(self) -> int:
        return len(self._templates)


@functools.cache
def default_store() -> TemplateStore:
    """Process-wide store of the packaged templates (loaded lazily, once)."""
    return TemplateStore()


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "act"
        if error["type"] == "string_pattern_mismatch":
            message = f"must match {ACT_KEY_PATTERN} (lowercase snake_case)"
        elif error["type"] == "extra_forbidden":
            message = "unexpected field"
        else:
            message = error["msg"]
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


def validate_custom_acts(acts: list[dict[str, Any]]) -> list[TemplateAct]:
    """Validate user-supplied acts for a custom template.

    Accepts the raw decoded JSON (checked defensively: it is untrusted input) and returns
    validated acts, or raises :class:`InvalidCustomTemplate` whose message names the first-found
    problem(s) with a 1-based act number, suitable for returning to the API client.
    """
    if not isinstance(acts, list):
        raise InvalidCustomTemplate("acts must be a list")
    if not 1 <= len(acts) <= MAX_CUSTOM_ACTS:
        raise InvalidCustomTemplate(f"a custom template needs 1 to {MAX_CUSTOM_ACTS} acts, got {len(acts)}")
    validated: list[TemplateAct] = []
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(acts, start=1):
        if not isinstance(raw, Mapping):
            raise InvalidCustomTemplate(f"act {number}: must be an object with key, name and description")
        try:
            act = TemplateAct.model_validate(dict(raw))
        except ValidationError as exc:
            raise InvalidCustomTemplate(f"act {number}: {_describe_validation_error(exc)}") from None
        if act.key in first_seen:
            raise InvalidCustomTemplate(
                f"act {number}: duplicate act key {act.key!r} (already used by act {first_seen[act.key]})"
            )
        first_seen[act.key] = number
        validated.append(act)
    return validated
