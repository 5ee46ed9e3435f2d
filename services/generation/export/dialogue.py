"""Dialogue as Claude wrote it ("screenplay-ish" text that mostly follows Fountain conventions but is not
guaranteed to) parsed into explicit elements: actions and speeches. The exporters render those elements;
the Fountain writer re-emits them canonically (services/generation/export/fountain.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


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

_EXTENSION = r"\((?i:V\.O\.|O\.S\.|O\.C\.|CONT['\u2019]D)\)"
_NAME = r"[^\W_](?:[^\W_]|[ .'\u2019\-])*"
_CUE_RE = re.compile(rf"(?P<name>{_NAME}?)(?P<ext>(?:\s*{_EXTENSION})*)")
_NAME_RE = re.compile(_NAME)
_SPLIT_EXTENSION_RE = re.compile(rf"(?P<name>.+?)(?P<ext>(?:\s*{_EXTENSION})*)")
PARENTHETICAL_RE = re.compile(r"\([^()]*\)")
_LEADING_PARENTHETICAL_RE = re.compile(r"(\([^()]*\))\s+(\S.*)")
# Same rules as screenplain / the Fountain spec (matched against the upper-cased line).
_SCENE_HEADING_RE = re.compile(r"(?:INT|EXT|EST|INT\.?/EXT\.?|I/E)[ .]")


def paragraphs(text: str) -> list[list[str]]:
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


def is_scene_heading(line: str) -> bool:
    return _SCENE_HEADING_RE.match(line.upper()) is not None


def _cue(line: str, known: set[str]) -> str | None:
    """Return the character cue if ``line`` is one, else ``None``."""
    if line.startswith("@") and len(line) > 1:  # Fountain's forced character
        return line[1:].strip() or None
    match = _CUE_RE.fullmatch(line)
    if match and match["name"].isupper() and not is_scene_heading(line):
        return line
    # Names the scene declares may legitimately contain lowercase letters (McCLANE, DeSOTO).
    split = _SPLIT_EXTENSION_RE.fullmatch(line)
    if split and split["name"].strip().casefold() in known:
        return line
    return None


def _known_names(characters: Iterable[str]) -> set[str]:
    names = set()
    for character in characters:
        if isinstance(character, str):
            name = " ".join(character.split())
            if _NAME_RE.fullmatch(name):
                names.add(name.casefold())
    return names


def parse_dialogue(text: str, characters: Iterable[str] = ()) -> list[ScriptElement]:
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
    for lines in paragraphs(text):
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
        if PARENTHETICAL_RE.fullmatch(body[0]):
            parenthetical, body = body[0], body[1:]
        elements.append(DialogueLine(cue, parenthetical, "\n".join(body)))
    return elements
