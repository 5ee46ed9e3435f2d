"""A project as a Fountain screenplay (https://fountain.io), written canonically: anything a Fountain parser
would otherwise misread is escaped (checked against the real `screenplain` parser in the tests)."""

from __future__ import annotations

from services.generation.export.dialogue import (
    PARENTHETICAL_RE,
    Action,
    DialogueLine,
    is_scene_heading,
    paragraphs,
)
from services.generation.export.script import one_line, outline, title
from services.generation.project import Project

_LINE_MARKERS = ("!", "@", ".", "#", "=", "~", ">", "[")


def _defuse(text: str) -> str:
    """Break up Fountain note (``[[ ]]``) and boneyard (``/* */``) markers, which parsers delete."""
    for marker, replacement in (("[[", "[ ["), ("]]", "] ]"), ("/*", "/ *"), ("*/", "* /")):
        while marker in text:
            text = text.replace(marker, replacement)
    return text


def _first_line_misread(line: str) -> bool:
    """Would a Fountain parser take this action paragraph's first line as something else?"""
    if line.startswith(_LINE_MARKERS) or is_scene_heading(line):
        return True
    # All caps reads as a character cue (or a transition when ending in "TO:"); screenplain only
    # looks at the text before "(" when deciding.
    return line.isupper() or line.split("(", 1)[0].isupper()


def _action(text: str) -> list[str]:
    written = []
    for lines in paragraphs(text):
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
        written.append("\n".join(out))
    return written


def _cue(character: str) -> str:
    name = _defuse(one_line(character))
    plain = (
        name.split("(", 1)[0].isupper()
        and not name.startswith(_LINE_MARKERS)
        and not name.endswith("^")
        and not is_scene_heading(name)
    )
    return name if plain else "@" + name


def _speech(element: DialogueLine) -> str | None:
    lines = [_cue(element.character)]
    if element.parenthetical and element.parenthetical.strip():
        parenthetical = _defuse(one_line(element.parenthetical))
        if not PARENTHETICAL_RE.fullmatch(parenthetical):
            parenthetical = f"({parenthetical.strip('()')})"
        lines.append(parenthetical)
    # Blank lines would end the speech, so they are dropped.
    lines.extend(_defuse(line.strip()) for line in element.line.split("\n") if line.strip())
    return "\n".join(lines) if len(lines) > 1 else None


def _heading(heading: str) -> str:
    heading = _defuse(heading)
    return heading if is_scene_heading(heading) else "." + heading


def author_of(project: Project, writer: str) -> str:
    """Who the title page credits: the story input's author (or authors), else the writer who owns it."""
    author = project.story_input.get("author")
    if isinstance(author, list):
        author = ", ".join(str(a) for a in author if str(a).strip())
    return one_line(author if isinstance(author, str) and author.strip() else writer)


def to_fountain(project: Project, writer: str = "") -> str:
    """Render the project as a Fountain screenplay.

    The title page names the author (`author_of`). Acts become sections (``# name``) with their description
    as a synopsis, plot points become notes (``[[ ]]``, invisible in the formatted script), each scene gets a
    heading (forced with ``.`` when it is not INT./EXT./EST./I/E), its title as a synopsis, its description as
    action, then its dialogue in canonical Fountain. No dates are written so exports are deterministic.
    """
    title_page = [f"Title: {_defuse(title(project))}", "Credit: Written by"]
    author = author_of(project, writer)
    if author:
        title_page.append(f"Author: {_defuse(author)}")

    written: list[str] = ["\n".join(title_page)]
    for act in outline(project):
        written.append("# " + (_defuse(one_line(act.name)).lstrip("# ") or act.key))
        if act.description:
            written.append("= " + _defuse(one_line(act.description)))
        for number, point in enumerate(act.plot_points, start=1):
            written.append(f"[[Plot point {number}: {_defuse(one_line(point))}]]")
        for scene in act.scenes:
            written.append(_heading(scene.heading))
            if scene.title.strip():
                written.append("= " + _defuse(one_line(scene.title)))
            written.extend(_action(scene.description))
            for element in scene.elements:
                if isinstance(element, Action):
                    written.extend(_action(element.text))
                else:
                    speech = _speech(element)
                    if speech is not None:
                        written.append(speech)
    return "\n\n".join(written) + "\n"
