"""A project as a readable plain-text document: the story, its outline, then the screenplay. Lines are not
re-wrapped, so every generated line appears verbatim (and greppable)."""

from __future__ import annotations

import json
from typing import Any

from services.generation.export.dialogue import PARENTHETICAL_RE, Action
from services.generation.export.script import one_line, outline, title
from services.generation.project import Project

_CHARACTER_INDENT = " " * 22
_PARENTHETICAL_INDENT = " " * 16
_DIALOGUE_INDENT = " " * 10


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def _story_fields(story: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in story.items():
        if key == "title" or value is None or value == "" or value == [] or value == {}:
            continue
        label = str(key).replace("_", " ").capitalize()
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            rendered = ", ".join(str(v) for v in value)
        elif isinstance(value, dict | list):
            rendered = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        else:
            rendered = str(value)
        lines.append(f"{label}: {rendered}")
    return lines


def to_text(project: Project, writer: str = "") -> str:
    name = title(project)
    out = [name.upper(), "=" * len(name), ""]
    out.extend(_story_fields(project.story_input))
    out.append(f"Template: {project.template.name or project.template.id}")
    acts = outline(project)

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
            for element in scene.elements:
                out.append("")
                if isinstance(element, Action):
                    out.append(element.text)
                    continue
                out.append(_CHARACTER_INDENT + one_line(element.character))
                if element.parenthetical:
                    out.append(_PARENTHETICAL_INDENT + element.parenthetical.strip())
                for line in element.line.split("\n") if element.line else ():
                    is_parenthetical = PARENTHETICAL_RE.fullmatch(line) is not None
                    out.append((_PARENTHETICAL_INDENT if is_parenthetical else _DIALOGUE_INDENT) + line)
    return "\n".join(out).rstrip() + "\n"
