"""The prompts carry the story's hierarchy: with character profiles in the project, every later scene and
dialogue prompt carries each character's profile, so the cast stays consistent."""

from __future__ import annotations

from services.generation import prompts
from services.generation.project import Project

MAYA = {"name": "MAYA", "role": "protagonist", "want": "one last score", "need": "to let her crew go",
        "arc": "from control to trust", "voice": "clipped, dry, never says sorry"}


def project(characters: list[dict[str, str]]) -> Project:
    return Project.model_validate({
        "project_path": "p", "title": "The Last Heist", "story_input": {"title": "The Last Heist"},
        "template": {"id": "three-act", "name": "Three-Act", "acts": [{"key": "setup", "name": "Setup"}]},
        "structure": {"setup": {"name": "Setup", "description": "Maya is offered the job."}},
        "scenes": {"setup": [{"slugline": "INT. WAREHOUSE - NIGHT", "title": "The pitch",
                              "description": "Maya lays out the plan.", "characters": ["MAYA"]}]},
        "characters": characters, "created_at": "2026-11-29T00:00:00Z", "updated_at": "2026-11-29T00:00:00Z",
    })


def test_scene_and_dialogue_prompts_carry_the_profiles() -> None:
    with_cast = project([MAYA])
    for prompt in (prompts.scene(with_cast, "setup"), prompts.dialogue(with_cast, "setup", 0),
                   prompts.plot_points(with_cast, "setup", None), prompts.scenes(with_cast, ["setup"], None)):
        assert "<characters>" in prompt
        assert all(value in prompt for value in MAYA.values())


def test_without_profiles_there_is_no_cast_block() -> None:
    assert "<characters>" not in prompts.scene(project([]), "setup")


def test_the_characters_prompt_sees_the_story_so_far() -> None:
    prompt = prompts.characters(project([]))
    assert "Maya is offered the job." in prompt and "INT. WAREHOUSE - NIGHT" in prompt
