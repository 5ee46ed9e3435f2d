"""A writer's project, typed, from storage to prompts to export: what the story is (its input, template and
structure) and what was generated for it (plot points, scenes, dialogue), each part made of the same models
Claude's answers are checked with (services/generation/outputs.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.generation.outputs import Act, Character, Scene
from services.generation.templates import StoryTemplate


class Project(BaseModel):
    """A project as it is read: only paid parts, the newest of each (see repository.assemble)."""

    model_config = ConfigDict(frozen=True)

    project_path: str
    title: str
    story_input: dict[str, Any]
    template: StoryTemplate
    structure: dict[str, Act] = Field(default_factory=dict)
    plot_points: dict[str, list[str]] = Field(default_factory=dict)
    scenes: dict[str, list[Scene]] = Field(default_factory=dict)
    #: A scene's dialogue, keyed "act_key:scene_index" (as the API has always shown it).
    dialogue: dict[str, str] = Field(default_factory=dict)
    #: The cast's profiles (the characters kind), which the scene and dialogue prompts carry.
    characters: list[Character] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @property
    def act_keys(self) -> list[str]:
        return [act.key for act in self.template.acts]

    def dialogue_of(self, act_key: str, scene_index: int) -> str | None:
        return self.dialogue.get(f"{act_key}:{scene_index}")

    def document(self, *, with_dialogue: bool = True) -> dict[str, Any]:
        """The project as the API shows it (GET /api/projects/{projectPath})."""
        return self.model_dump(mode="json", exclude=None if with_dialogue else {"dialogue"})
