"""Export a generated project (the JSON document stored in the DB) as Fountain, plain text or JSON.

The project dict is produced incrementally by generation steps, so every part (structure, plot
points, scenes, dialogue) may be missing or partial; exporters never raise on missing data.

Dialogue is stored as the model wrote it: "screenplay-ish" text that mostly follows Fountain
conventions but is not guaranteed to. :func:`parse_dialogue` turns it into explicit elements, and
the Fountain writer re-emits those canonically, escaping anything a Fountain parser would
otherwise misread (verified against the real ``screenplain`` parser in the tests).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "Action",
    "DialogueLine",
    "ScriptElement",
    "parse_dialogue",
    "scene_heading",
    "to_fountain",
    "to_json",
    "to_text",
]

EXPORT_FORMAT = "film-script-generator/project-export"
EXPORT_VERSION = 1


@dataclass(frozen=True)
class Action:
    """An action (scene description) paragraph; lines are separated by ``\\n``."""

    text: str


@dataclass(frozen=True)
class DialogueLine:
    """One speech: the character cue (including any extension such as ``(V.O.)``), an optional
    leading parenthetical (with its parentheses) and the spoken text.

    ``line`` may span several lines joined by ``\\n``; a mid-speech parenthetical such as
    ``(beat)`` stays on its own line inside it, because splitting the speech in two would change
    the formatted script (a second cue would be printed).
    """

    character: str
    parenthetical: str | None
    line: str


ScriptElement = Action | DialogueLine

# --------------------------------------------------------------------------- dialogue parsing

_EXTENSION = r"\((?i:V\.O\.|O\.S\.|O\.C\.|CONT['\u2019]D)\)"
_NAME = r"[^\W_](?:[^\W_]|[ .'\u2019\-])*"
_CUE_RE = re.compile(rf"(?P<name>{_NAME}?)(?P<ext>(?:\s*{_EXTENSION})*)")
_NAME_RE = re.compile(_NAME)
_SPLIT_EXTENSION_RE = re.compile(rf"(?P<name>.+?)(?P<ext>(?:\s*{_EXTENSION})*)")
_PARENTHETICAL_RE = re.compile(r"\([^()]*\)")
_LEADING_PARENTHETICAL_RE = re.compile(r"(\([^()]*\))\s+(\S.*)")
# Same rules as screenplain / the Fountain spec (matched against the upper-cased line).
_SCENE_HEADING_RE = re.compile(r"(?:INT|EXT|EST|INT\.?/EXT\.?|I/E)[ .]")


def _paragraphs(text: str) -> list[list[str]]:
    """Split text into paragraphs (lists of stripped, non-empty lines) on blank lines."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _is_scene_heading(line: str) -> bool:
    return _SCENE_HEADING_RE.match(line.upper()) is not None


def _cue(line: str, known: set[str]) -> str | None:
    """Return the character cue if ``line`` is one, else ``None``."""
    if line.startswith("@") and len(line) > 1:  # Fountain's forced character
        return line[1:].strip() or None
    match = _CUE_RE.fullmatch(line)
    if match and match["name"].isupper() and not _is_scene_heading(line):
        return line
    # Names the scene declares may legitimately contain lowercase letters (McCLANE, DeSOTO).
    split = _SPLIT_EXTENSION_RE.fullmatch(line)
    if split and split["name"].strip().casefold() in known:
        return line
    return None


def _known_names(characters: Iterable[Any]) -> set[str]:
    names = set()
    for character in characters:
        if isinstance(character, str):
            name = " ".join(character.split())
            if _NAME_RE.fullmatch(name):
                names.add(name.casefold())
    return names


def parse_dialogue(text: str, characters: Iterable[Any] = ()) -> list[ScriptElement]:
    """Parse screenplay-ish dialogue text into :class:`Action` and :class:`DialogueLine` elements.

    A paragraph (lines between blank lines) is a speech when its first line is a character cue
    and at least one line follows it. A cue is an UPPERCASE line (letters, digits, spaces,
    ``.'-``) with optional ``(V.O.)``/``(O.S.)``/``(O.C.)``/``(CONT'D)`` extensions, a line
    forced with ``@`` (Fountain), or a name listed in ``characters`` (the scene's cast, which may
    contain lowercase letters). Scene-heading-like lines are never cues. Everything else is action;
    a leading ``!`` (Fountain's forced action) is dropped. A lone all-caps line is action, since a
    cue with nothing to say is not a speech.
    """
    known = _known_names(characters)
    elements: list[ScriptElement] = []
    for lines in _paragraphs(text):
        cue = _cue(lines[0], known) if len(lines) > 1 else None
        if cue is None:
            if lines[0].startswith("!"):
                lines = [lines[0][1:].lstrip(), *lines[1:]]
            action = "\n".join(line for line in lines if line)
            if action:
                elements.append(Action(action))
            continue
        body: list[str] = []
        for line in lines[1:]:
            # "(quietly) Fine." -> "(quietly)" + "Fine.": canonical form, and parsers expect it.
            split = _LEADING_PARENTHETICAL_RE.fullmatch(line)
            body.extend(split.groups() if split else (line,))
        parenthetical = None
        if _PARENTHETICAL_RE.fullmatch(body[0]):
            parenthetical, body = body[0], body[1:]
        elements.append(DialogueLine(cue, parenthetical, "\n".join(body)))
    return elements


# --------------------------------------------------------------------------- project access


@dataclass(frozen=True)
class _Scene:
    index: int
    slugline: str
    title: str
    description: str
    characters: list[str]
    dialogue: str | None

    @property
    def heading(self) -> str:
        return scene_heading(self.slugline, fallback=self.title or f"SCENE {self.index + 1}")

    def elements(self) -> list[ScriptElement]:
        return parse_dialogue(self.dialogue or "", self.characters)


@dataclass(frozen=True)
class _Act:
    key: str
    name: str
    description: str
    plot_points: list[str]
    scenes: list[_Scene] = field(default_factory=list)


def _str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _acts(project: Mapping[str, Any]) -> list[_Act]:
    """Acts in template order, followed by any act keys only present in the generated data.

    The act name/description come from the generated structure when present (it is specific to
    this story) and fall back to the template's generic ones.
    """
    template_acts = [act for act in _sequence(_mapping(project.get("template")).get("acts"))
                     if isinstance(act, Mapping) and _str(act.get("key"))]
    structure = _mapping(project.get("structure"))
    plot_points = _mapping(project.get("plot_points"))
    scenes = _mapping(project.get("scenes"))
    dialogue = _mapping(project.get("dialogue"))

    keys: list[str] = []
    for key in [_str(act.get("key")) for act in template_acts] + [*structure, *plot_points, *scenes]:
        if key not in keys:
            keys.append(key)
    template_by_key = {_str(act.get("key")): act for act in template_acts}

    acts = []
    for key in keys:
        template_act = template_by_key.get(key, {})
        generated = _mapping(structure.get(key))
        name = _str(generated.get("name")) or _str(template_act.get("name")) or key.replace("_", " ").title()
        description = _str(generated.get("description")) or _str(template_act.get("description"))
        act_scenes = []
        for index, raw_scene in enumerate(_sequence(scenes.get(key))):
            scene = _mapping(raw_scene)
            text = dialogue.get(f"{key}:{index}")
            act_scenes.append(_Scene(
                index=index,
                slugline=_str(scene.get("slugline")),
                title=_str(scene.get("title")),
                description=_str(scene.get("description")),
                characters=[_str(c) for c in _sequence(scene.get("characters")) if _str(c).strip()],
                dialogue=_str(text) if text is not None else None,
            ))
        points = [_str(p) for p in _sequence(plot_points.get(key)) if _str(p).strip()]
        acts.append(_Act(key, name.strip(), description.strip(), points, act_scenes))
    return acts


def _title(project: Mapping[str, Any]) -> str:
    story = _mapping(project.get("story_input"))
    return _one_line(_str(project.get("title")) or _str(story.get("title"))) or "Untitled"


def scene_heading(slugline: str, fallback: str = "SCENE") -> str:
    """The canonical scene heading for a slugline: one line, upper case, no leading ``.``.

    This is exactly what a Fountain parser reports for the heading :func:`to_fountain` writes.
    """
    heading = _one_line(slugline).lstrip(". ").upper()
    return heading or _one_line(fallback).lstrip(". ").upper() or "SCENE"


# --------------------------------------------------------------------------- Fountain


def _defuse(text: str) -> str:
    """Break up Fountain note (``[[ ]]``) and boneyard (``/* */``) markers, which parsers delete."""
    for marker, replacement in (("[[", "[ ["), ("]]", "] ]"), ("/*", "/ *"), ("*/", "* /")):
        while marker in text:
            text = text.replace(marker, replacement)
    return text


_LINE_MARKERS = ("!", "@", ".", "#", "=", "~", ">", "[")


def _first_line_misread(line: str) -> bool:
    """Would a Fountain parser take this action paragraph's first line as something else?"""
    if line.startswith(_LINE_MARKERS) or _is_scene_heading(line):
        return True
    # All caps reads as a character cue (or a transition when ending in "TO:"); screenplain only
    # looks at the text before "(" when deciding.
    return line.isupper() or line.split("(", 1)[0].isupper()


def _fountain_action(text: str) -> list[str]:
    paragraphs = []
    for lines in _paragraphs(text):
        out = []
        for number, raw in enumerate(lines):
            line = _defuse(raw)
            # "!" forces action; parsers strip one leading "!" from every action line, so a line
            # that really starts with "!" needs a second one.
            if line.startswith("!") or (number == 0 and _first_line_misread(line)) or (
                line.startswith(("#", "=", "~", ">"))
            ):
                line = "!" + line
            out.append(line)
        paragraphs.append("\n".join(out))
    return paragraphs


def _fountain_cue(character: str) -> str:
    name = _defuse(_one_line(character))
    plain = (
        name.split("(", 1)[0].isupper()
        and not name.startswith(_LINE_MARKERS)
        and not name.endswith("^")
        and not _is_scene_heading(name)
    )
    return name if plain else "@" + name


def _fountain_dialogue(element: DialogueLine) -> str | None:
    lines = [_fountain_cue(element.character)]
    if element.parenthetical and element.parenthetical.strip():
        parenthetical = _defuse(_one_line(element.parenthetical))
        if not _PARENTHETICAL_RE.fullmatch(parenthetical):
            parenthetical = f"({parenthetical.strip('()')})"
        lines.append(parenthetical)
    # Blank lines would end the speech, so they are dropped.
    lines.extend(_defuse(line.strip()) for line in element.line.split("\n") if line.strip())
    return "\n".join(lines) if len(lines) > 1 else None


def _fountain_heading(heading: str) -> str:
    heading = _defuse(heading)
    return heading if _is_scene_heading(heading) else "." + heading


def to_fountain(project: Mapping[str, Any]) -> str:
    """Render the project as a Fountain screenplay.

    Acts become sections (``# name``) with their description as a synopsis, plot points become
    notes (``[[ ]]``, invisible in the formatted script), each scene gets a heading (forced with
    ``.`` when it is not INT./EXT./EST./I/E), its title as a synopsis, its description as action,
    then its dialogue in canonical Fountain. No dates are written so exports are deterministic.
    """
    story = _mapping(project.get("story_input"))
    title_page = [f"Title: {_defuse(_title(project))}", "Credit: Written by"]
    author = story.get("author")
    if isinstance(author, list):
        author = ", ".join(_str(a) for a in author)
    if _str(author).strip():
        title_page.append(f"Author: {_defuse(_one_line(_str(author)))}")

    paragraphs: list[str] = ["\n".join(title_page)]
    for act in _acts(project):
        paragraphs.append("# " + (_defuse(_one_line(act.name)).lstrip("# ") or act.key))
        if act.description:
            paragraphs.append("= " + _defuse(_one_line(act.description)))
        for number, point in enumerate(act.plot_points, start=1):
            paragraphs.append(f"[[Plot point {number}: {_defuse(_one_line(point))}]]")
        for scene in act.scenes:
            paragraphs.append(_fountain_heading(scene.heading))
            if scene.title.strip():
                paragraphs.append("= " + _defuse(_one_line(scene.title)))
            paragraphs.extend(_fountain_action(scene.description))
            for element in scene.elements():
                if isinstance(element, Action):
                    paragraphs.extend(_fountain_action(element.text))
                else:
                    speech = _fountain_dialogue(element)
                    if speech is not None:
                        paragraphs.append(speech)
    return "\n\n".join(paragraphs) + "\n"


# --------------------------------------------------------------------------- plain text

_CHARACTER_INDENT = " " * 22
_PARENTHETICAL_INDENT = " " * 16
_DIALOGUE_INDENT = " " * 10


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def _story_fields(story: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in story.items():
        if key == "title" or value is None or value == "" or value == [] or value == {}:
            continue
        label = _str(key).replace("_", " ").capitalize()
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            rendered = ", ".join(_str(v) for v in value)
        elif isinstance(value, (Mapping, list)):
            rendered = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        else:
            rendered = _str(value)
        lines.append(f"{label}: {rendered}")
    return lines


def to_text(project: Mapping[str, Any]) -> str:
    """Render a readable plain-text document: story summary, outline, then the screenplay.

    Lines are not re-wrapped, so every generated line appears verbatim (and greppable).
    """
    title = _title(project)
    out = [title.upper(), "=" * len(title), ""]
    out.extend(_story_fields(_mapping(project.get("story_input"))))
    template = _mapping(project.get("template"))
    if _str(template.get("name")) or _str(template.get("id")):
        out.append(f"Template: {_str(template.get('name')) or _str(template.get('id'))}")
    acts = _acts(project)

    out += ["", "OUTLINE", "-------"]
    for number, act in enumerate(acts, start=1):
        out += ["", f"ACT {number}: {act.name}"]
        if act.description:
            out.append(_indent(act.description, "  "))
        if act.plot_points:
            out.append("  Plot points:")
            out.extend(_indent(f"{n}. {point}", "    ") for n, point in enumerate(act.plot_points, start=1))
        if act.scenes:
            out.append("  Scenes:")
            for scene in act.scenes:
                label = scene.heading + (f" - {scene.title.strip()}" if scene.title.strip() else "")
                out.append(f"    {scene.index + 1}. {label}")
                if scene.description.strip():
                    out.append(_indent(scene.description.strip(), "       "))

    out += ["", "SCREENPLAY", "----------"]
    for number, act in enumerate(acts, start=1):
        out += ["", f"ACT {number}: {act.name}".upper()]
        for scene in act.scenes:
            out += ["", scene.heading]
            if scene.description.strip():
                out += ["", scene.description.strip()]
            for element in scene.elements():
                out.append("")
                if isinstance(element, Action):
                    out.append(element.text)
                    continue
                out.append(_CHARACTER_INDENT + _one_line(element.character))
                if element.parenthetical:
                    out.append(_PARENTHETICAL_INDENT + element.parenthetical.strip())
                for line in element.line.split("\n") if element.line else ():
                    is_parenthetical = _PARENTHETICAL_RE.fullmatch(line) is not None
                    out.append((_PARENTHETICAL_INDENT if is_parenthetical else _DIALOGUE_INDENT) + line)
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    """A plain-JSON deep copy (tuples become lists, unknown objects strings)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _element_json(element: ScriptElement) -> dict[str, Any]:
    if isinstance(element, Action):
        return {"type": "action", "text": element.text}
    return {
        "type": "dialogue",
        "character": element.character,
        "parenthetical": element.parenthetical,
        "line": element.line,
    }


def to_json(project: Mapping[str, Any]) -> dict[str, Any]:
    """A self-describing, stable export document (fixed key order, acts in template order).

    Unlike the stored project (parallel dicts keyed by act key and ``"act:index"``), everything
    is nested act -> scene -> dialogue, with both the raw dialogue text and its parsed elements.
    Dialogue for scenes that do not exist is dropped.
    """
    template = _mapping(project.get("template"))
    return _jsonable({
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "project_path": _str(project.get("project_path")) or None,
        "title": _title(project),
        "story_input": dict(_mapping(project.get("story_input"))),
        "template": {
            "id": _str(template.get("id")) or None,
            "name": _str(template.get("name")) or None,
        } if template else None,
        "acts": [
            {
                "key": act.key,
                "name": act.name,
                "description": act.description,
                "plot_points": act.plot_points,
                "scenes": [
                    {
                        "index": scene.index,
                        "slugline": scene.slugline,
                        "heading": scene.heading,
                        "title": scene.title,
                        "description": scene.description,
                        "characters": scene.characters,
                        "dialogue_text": scene.dialogue,
                        "dialogue": [_element_json(element) for element in scene.elements()],
                    }
                    for scene in act.scenes
                ],
            }
            for act in _acts(project)
        ],
    })
