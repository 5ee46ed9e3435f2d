"""A project as a self-describing, stable JSON export: everything nested act → scene → dialogue (not the
stored shape's parallel maps keyed by act key and "act:index"), with each scene's raw dialogue text and its
parsed elements, keys in a fixed order."""

from __future__ import annotations

import json
from typing import Any

from services.generation.export.dialogue import Action, ScriptElement
from services.generation.export.script import outline, title
from services.generation.project import Project

EXPORT_FORMAT = "film-script-generator/project-export"
EXPORT_VERSION = 1


def _element(element: ScriptElement) -> dict[str, Any]:
    if isinstance(element, Action):
        return {"type": "action", "text": element.text}
    return {"type": "dialogue", "character": element.character, "parenthetical": element.parenthetical,
            "line": element.line}


def to_document(project: Project, writer: str = "") -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "project_path": project.project_path,
        "title": title(project),
        "story_input": project.story_input,
        "template": {"id": project.template.id, "name": project.template.name},
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
                        "dialogue": [_element(element) for element in scene.elements],
                    }
                    for scene in act.scenes
                ],
            }
            for act in outline(project)
        ],
    }


def to_json(project: Project, writer: str = "") -> str:
    return json.dumps(to_document(project, writer), ensure_ascii=False, indent=2)
