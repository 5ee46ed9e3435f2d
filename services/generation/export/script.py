"""A project as a script outline, the one shape every exporter renders: acts in template order, each with
its title (the generated one, else the template's), plot points and scenes, each scene with its heading,
cast and parsed dialogue. A project is built step by step, so any act may have no plot points, scenes or
dialogue yet; the outline simply has none."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from services.generation.export.dialogue import ScriptElement, parse_dialogue
from services.generation.project import Project


def one_line(text: str) -> str:
    return " ".join(text.split())


def scene_heading(slugline: str, fallback: str = "SCENE") -> str:
    """The canonical scene heading for a slugline: one line, upper case, no leading ``.``.

    This is exactly what a Fountain parser reports for the heading the Fountain exporter writes.
    """
    heading = one_line(slugline).lstrip(". ").upper()
    return heading or one_line(fallback).lstrip(". ").upper() or "SCENE"


@dataclass(frozen=True)
class ScriptScene:
    index: int
    slugline: str
    title: str
    description: str
    characters: list[str]
    dialogue: str | None

    @property
    def heading(self) -> str:
        return scene_heading(self.slugline, fallback=self.title or f"SCENE {self.index + 1}")

    @cached_property
    def elements(self) -> list[ScriptElement]:
        return parse_dialogue(self.dialogue or "", self.characters)


@dataclass(frozen=True)
class ScriptAct:
    key: str
    name: str
    description: str
    plot_points: list[str]
    scenes: list[ScriptScene] = field(default_factory=list)


def title(project: Project) -> str:
    story_title = project.story_input.get("title")
    return one_line(project.title or (story_title if isinstance(story_title, str) else "")) or "Untitled"


def outline(project: Project) -> list[ScriptAct]:
    """The acts in template order. An act's name and description come from the generated structure (specific
    to this story) when there is one, else from the template's generic ones."""
    acts = []
    for template_act in project.template.acts:
        key = template_act.key
        generated = project.structure.get(key)
        scenes = [
            ScriptScene(index, scene.slugline, scene.title, scene.description, list(scene.characters),
                        project.dialogue_of(key, index))
            for index, scene in enumerate(project.scenes.get(key, []))
        ]
        acts.append(ScriptAct(
            key=key,
            name=(generated.name if generated else "") or template_act.name or key.replace("_", " ").title(),
            description=(generated.description if generated else "") or template_act.description,
            plot_points=list(project.plot_points.get(key, [])),
            scenes=scenes,
        ))
    return acts
