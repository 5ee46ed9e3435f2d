"""Prompts that carry the story's hierarchy, so each step stays consistent with what came before:
story input → template → acts → plot points (this act and earlier ones) → scenes → dialogue."""

from __future__ import annotations

import json
from typing import Any

from services.generation.outputs import how_many
from services.generation.project import Project
from services.generation.templates import StoryTemplate

SYSTEM = (
    "You are an experienced feature-film screenwriter and story editor. You develop stories step by "
    "step: structure, then plot points, then scenes, then dialogue. Stay consistent with everything "
    "already established about the story: its characters, tone, genre and the events of earlier acts. "
    "Write concrete, visual, filmable material. When a tool is provided, answer only by calling it."
)


def _story_block(story_input: dict[str, Any]) -> str:
    return "<story_input>\n" + json.dumps(story_input, ensure_ascii=False, indent=2) + "\n</story_input>"


def _template_block(template: StoryTemplate) -> str:
    lines = [f"<template name=\"{template.name}\">"]
    for act in template.acts:
        lines.append(f"- {act.key}: {act.name} — {act.description}")
    lines.append("</template>")
    return "\n".join(lines)


def _structure_block(project: Project) -> str:
    lines = ["<structure>"]
    for key in project.act_keys:
        entry = project.structure.get(key)
        if entry:
            lines.append(f"- {key} ({entry.name}): {entry.description}")
    lines.append("</structure>")
    return "\n".join(lines)


def _plot_points_block(project: Project, up_to_act: str | None) -> str:
    lines = ["<plot_points>"]
    for key in project.act_keys:
        for i, point in enumerate(project.plot_points.get(key, []), 1):
            lines.append(f"- {key} #{i}: {point}")
        if key == up_to_act:
            break
    lines.append("</plot_points>")
    return "\n".join(lines)


def _scenes_block(project: Project, act_keys: list[str]) -> str:
    lines = ["<scenes>"]
    for key in act_keys:
        for i, scene in enumerate(project.scenes.get(key, [])):
            lines.append(f"- {key}[{i}] {scene.slugline} — {scene.title}: {scene.description}")
    lines.append("</scenes>")
    return "\n".join(lines)


def _characters_block(project: Project) -> str:
    lines = ["<characters>"]
    for c in project.characters:
        lines.append(f"- {c.name} ({c.role}). Wants: {c.want} Needs: {c.need} Arc: {c.arc} Voice: {c.voice}")
    lines.append("</characters>")
    return "\n".join(lines)


def _context(project: Project, up_to_act: str | None) -> str:
    blocks = [_story_block(project.story_input), _template_block(project.template), _structure_block(project),
              _plot_points_block(project, up_to_act)]
    if project.characters:
        blocks.append(_characters_block(project))
    return "\n\n".join(blocks)


def structure(story_input: dict[str, Any], template: StoryTemplate) -> str:
    return (
        f"{_story_block(story_input)}\n\n{_template_block(template)}\n\n"
        "Develop this story into the template's structure. For each act, keyed by its key, give a title "
        "for what happens in it (name) and a paragraph describing its events (description)."
    )


def plot_points(project: Project, act_key: str, count: int | None) -> str:
    return (
        f"{_context(project, act_key)}\n\n"
        f"Write {how_many('plot_points', count)} plot points for the act '{act_key}', in story order. Each is one "
        "or two sentences naming who does what and what changes. They must follow from the earlier acts' "
        "plot points."
    )


def scenes(project: Project, act_keys: list[str], count: int | None) -> str:
    return (
        f"{_context(project, act_keys[-1])}\n\n{_scenes_block(project, project.act_keys)}\n\n"
        f"Break each of these acts into {how_many('scenes', count)} scenes: {', '.join(act_keys)}. Each scene has "
        "a slugline (INT./EXT. PLACE - TIME), a short title, a description of the action, and the characters in "
        "it (names in capitals). Cover the act's plot points in order."
    )


def scene(project: Project, act_key: str) -> str:
    return (
        f"{_context(project, act_key)}\n\n{_scenes_block(project, [act_key])}\n\n"
        f"Write one new scene for the act '{act_key}' that comes after its existing scenes and moves its "
        "plot points forward: slugline, title, description and characters."
    )


def dialogue(project: Project, act_key: str, scene_index: int) -> str:
    one = project.scenes[act_key][scene_index]
    return (
        f"{_context(project, act_key)}\n\n{_scenes_block(project, [act_key])}\n\n"
        f"<scene act=\"{act_key}\" index=\"{scene_index}\">\n{one.slugline}\n{one.title}\n"
        f"{one.description}\nCharacters: {', '.join(one.characters)}\n</scene>\n\n"
        "Write this scene's dialogue in screenplay format: each speech starts with the character's name "
        "in capitals on its own line, an optional parenthetical on the next line, then the lines of "
        "dialogue; a blank line between speeches. Brief action lines may stand between speeches. "
        "Do not repeat the scene heading."
    )


def characters(project: Project) -> str:
    return (
        f"{_context(project, None)}\n\n{_scenes_block(project, project.act_keys)}\n\n"
        "Write a profile of each character this story needs (those already named first, in capitals): their "
        "role, what they want and what they need, their arc across the acts, and notes on their voice. Keep "
        "them consistent with everything above."
    )
