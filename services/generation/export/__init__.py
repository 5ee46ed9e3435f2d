"""Exports of a project, one module per job: the dialogue parser (dialogue), the outline every exporter
renders (script), and the three formats (fountain, text, document). `FORMATS` is the registry the
ExportProject call answers from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.generation.export.dialogue import Action, DialogueLine, ScriptElement, parse_dialogue
from services.generation.export.document import to_document, to_json
from services.generation.export.fountain import to_fountain
from services.generation.export.script import scene_heading
from services.generation.export.text import to_text
from services.generation.project import Project


@dataclass(frozen=True)
class Format:
    content_type: str
    extension: str
    render: Callable[[Project, str], str]  # (project, the writer who owns it) → the file


FORMATS = {
    "fountain": Format("text/plain; charset=utf-8", "fountain", to_fountain),
    "text": Format("text/plain; charset=utf-8", "txt", to_text),
    "json": Format("application/json", "json", to_json),
}

__all__ = ["FORMATS", "Action", "DialogueLine", "Format", "ScriptElement", "parse_dialogue", "scene_heading",
           "to_document", "to_fountain", "to_json", "to_text"]
