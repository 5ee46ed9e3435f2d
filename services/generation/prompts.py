"""Prompts that carry the story's hierarchy, so each step stays consistent with what came before:
story input → template → acts → plot points (this act and earlier ones) → scenes → dialogue."""

from __future__ import annotations

import json
from typing import Any

SYSTEM = (
    "You are an experienced feature-film screenwriter and story editor. You develop stories step by "
    "step: structure, then plot points, then scenes, then dialogue. Stay consistent with everything "
    "already established about the story: its characters, tone, genre and the events of earlier acts. "
    "Write concrete, visual, filmable material. When a tool is provided, answer only by calling it."
)


def _story_block(story_input: dict[str, Any]) -> str:
    return "<story_input>\n" + json.dumps(story_input, ensure_ascii=False, indent=2) + "\n</story_input>"


def _template_block(template: dict[str, Any]) -> str:
    lines = [f"<template name=\"{template.get('name', 'Custom')}\">"]
    for act in template["acts"]:
        lines.append(f"- {act['key']}: {act['name']} — {act.get('description', '')}")
    lines.append("</template>")
    return "\n".join(lines)


def _structure_block(project: dict[str, Any]) -> str:
    structure = project.get("structure") or {}
    lines = ["<structure>"]
    for act in project["template"]["acts"]:
        entry = structure.get(act["key"])
        if entry:
            lines.append(f"- {act['key']} ({entry['name']}): {entry['description']}")
    lines.append("</structure>")
    return "\n".join(lines)


def _plot_points_block(project: dict[str, Any], up_to_act: str | None) -> str:
    points = project.get("plot_points") or {}
    lines = ["<plot_points>"]
    for act in project["template"]["acts"]:
        for i, point in enumerate(points.get(act["key"], []), 1):
            lines.append(f"- {act['key']} #{i}: {point}")
        if act["key"] == up_to_act:
            break
    lines.append("</plot_points>")
    return "\n".join(lines)


def _scenes_block(project: dict[str, Any], act_keys: list[str]) -> str:
    scenes = project.get("scenes") or {}
    lines = ["<scenes>"]
    for key in act_keys:
        for i, scene in enumerate(scenes.get(key, [])):
            lines.append(f"- {key}[{i}] {scene['slugline']} — {scene['title']}: {scene['description']}")
    lines.append("</scenes>")
    return "\n".join(lines)


def _context(project: dict[str, Any], up_to_act: str | None) -> str:
    return "\n\n".join(
        [
            _story_block(project["story_input"]),
            _template_block(project["template"]),
            _structure_block(project),
            _plot_points_block(project, up_to_act),
        ]
    )


def structure_prompt(story_input: dict[str, Any], template: dict[str, Any]) -> str:
    return (
        f"{_story_block(story_input)}\n\n{_template_block(template)}\n\n"
        "Develop this story into the template's structure. For each act, keyed by its key, give a title "
        "for what happens in it (name) and a paragraph describing its events (description)."
    )


def plot_points_prompt(project: dict[str, Any], act_key: str, count: int | None) -> str:
    how_many = f"exactly {count}" if count else "3 to 8"
    return (
        f"{_context(project, act_key)}\n\n"
        f"Write {how_many} plot points for the act '{act_key}', in story order. Each is one or two sentences "
        "naming who does what and what changes. They must follow from the earlier acts' plot points."
    )


def scenes_prompt(project: dict[str, Any], act_keys: list[str], count: int | None) -> str:
    how_many = f"exactly {count}" if count else "2 to 5"
    earlier = [a["key"] for a in project["template"]["acts"]]
    return (
        f"{_context(project, act_keys[-1])}\n\n{_scenes_block(project, earlier)}\n\n"
        f"Break each of these acts into {how_many} scenes: {', '.join(act_keys)}. Each scene has a "
        "slugline (INT./EXT. PLACE - TIME), a short title, a description of the action, and the "
        "characters in it (names in capitals). Cover the act's plot points in order."
    )


def scene_prompt(project: dict[str, Any], act_key: str) -> str:
    return (
        f"{_context(project, act_key)}\n\n{_scenes_block(project, [act_key])}\n\n"
        f"Write one new scene for the act '{act_key}' that comes after its existing scenes and moves its "
        "plot points forward: slugline, title, description and characters."
    )


def dialogue_prompt(project: dict[str, Any], act_key: str, scene_index: int) -> str:
    scene = project["scenes"][act_key][scene_index]
    return (
        f"{_context(project, act_key)}\n\n{_scenes_block(project, [act_key])}\n\n"
        f"<scene act=\"{act_key}\" index=\"{scene_index}\">\n{scene['slugline']}\n{scene['title']}\n"
        f"{scene['description']}\nCharacters: {', '.join(scene['characters'])}\n</scene>\n\n"
        "Write this scene's dialogue in screenplay format: each speech starts with the character's name "
        "in capitals on its own line, an optional parenthetical on the next line, then the lines of "
        "dialogue; a blank line between speeches. Brief action lines may stand between speeches. "
        "Do not repeat the scene heading."
    )
