"""The generation kinds, one registry entry each: its endpoint, its price floor, its default output cap, how
its prompt is drafted (and with which output model Claude must answer) and how its answer is saved.

Adding a kind is: a typed request in protos/generation.proto's `GenerateRequest.kind`, an entry here with its
prompt (prompts.py) and output model (outputs.py), and a route in edge/routes/generate.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from pydantic import BaseModel

from protos import generation_pb2
from services.generation import outputs, prompts
from services.generation.errors import ActNotFound, InvalidGenerationInput, SceneNotFound
from services.generation.outputs import MAX_COUNT
from services.generation.project import Project
from services.generation.templates import StoryTemplate

MAX_STORY_INPUT_BYTES = 16_384


@dataclass(frozen=True)
class Draft:
    """What a kind decides from the request and the project, before anything is held: the prompt and what
    the answer will cover."""

    prompt: str
    act_keys: list[str] = field(default_factory=list)
    template: StoryTemplate | None = None


class Stage(Protocol):
    """Where a kind saves its answer: under the hold that pays for it (repository.Stager)."""

    async def project(self, title: str, story_input: dict[str, Any], template: StoryTemplate,
                      structure: dict[str, Any]) -> str: ...

    async def part(self, kind: str, act_key: str, payload: Any, scene_index: int = -1) -> int: ...


@dataclass(frozen=True)
class Templates:
    """What drafting a structure needs besides the request: the stored templates, resolved by id."""

    resolve: Callable[[str], StoryTemplate]
    custom: Callable[[generation_pb2.Template], StoryTemplate]


#: Draft the call from its request, the project (None for kinds that create one) and the templates.
Drafter = Callable[[Any, Project | None, Templates], Draft]
#: The output model Claude must answer with, from the request and the acts the draft covers (None: free text).
#: A function of the plan alone, so Execute rebuilds exactly the model whose schema Prepare sent.
OutputModel = Callable[[Any, list[str]], type[BaseModel] | None]
#: Save the checked answer (an output model instance, or text): returns the endpoint's result object.
Saver = Callable[[Any, Draft, Any, Stage, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """The forced tool Claude answers through: its name and what it is for (its schema is the output model's)."""

    name: str
    description: str


@dataclass(frozen=True)
class Kind:
    field: str                 # its field of GenerateRequest.kind
    endpoint: str              # as usage rows and metrics name it
    minimum: Decimal           # the least a call holds, whatever its worst case
    default_max_tokens: int
    needs_project: bool
    tool: Tool | None          # None: Claude answers in free text
    draft: Drafter
    output: OutputModel
    save: Saver


# -- shared checks --------------------------------------------------------------------------------------

def story_input(value: Struct) -> dict[str, Any]:
    """The writer's story input as plain JSON (whole numbers stay whole), checked: an object with text."""
    story = _whole_numbers(json_format.MessageToDict(value))
    if len(json_format.MessageToJson(value, indent=None).encode()) > MAX_STORY_INPUT_BYTES:
        raise InvalidGenerationInput(f"storyInput is larger than {MAX_STORY_INPUT_BYTES} bytes")
    if not any(isinstance(v, str) and v.strip() for v in story.values()):
        raise InvalidGenerationInput("storyInput must be an object with at least one non-empty text field")
    return story


def _whole_numbers(value: Any) -> Any:
    """protobuf's Struct carries every number as a double; a whole one goes back to an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def story_title(story: dict[str, Any]) -> str:
    for key in ("title", "logline", "premise", "idea"):
        value = story.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    first = next(v for v in story.values() if isinstance(v, str) and v.strip())
    return str(first).strip()[:200]


def _count(value: int) -> int | None:
    if value and not 1 <= value <= MAX_COUNT:
        raise InvalidGenerationInput(f"desiredSceneCount must be between 1 and {MAX_COUNT}")
    return value or None


def _act(project: Project | None, act_key: str) -> tuple[Project, str]:
    assert project is not None
    if act_key not in project.act_keys:
        raise ActNotFound(f"Act '{act_key[:80]}' not found in this project")
    return project, act_key


# -- structure -----------------------------------------------------------------------------------------

def _structure_draft(template: StoryTemplate, story: dict[str, Any]) -> Draft:
    return Draft(prompts.structure(story, template), [act.key for act in template.acts], template)


def draft_structure(request: generation_pb2.StructureRequest, project: Project | None, templates: Templates) -> Draft:
    return _structure_draft(templates.resolve(request.template_id), story_input(request.story_input))


def draft_structure_custom(request: generation_pb2.StructureCustomRequest, project: Project | None,
                           templates: Templates) -> Draft:
    return _structure_draft(templates.custom(request.template), story_input(request.story_input))


async def save_structure(request: Any, draft: Draft, answer: BaseModel, stage: Stage, path: str) -> dict[str, Any]:
    assert draft.template is not None
    story = story_input(request.story_input)
    structure = outputs.as_keyed(answer)
    path = await stage.project(story_title(story), story, draft.template, structure)
    return {"projectPath": path, "template": draft.template.id, "structure": structure}


# -- plot points ---------------------------------------------------------------------------------------

def draft_plot_points(request: generation_pb2.PlotPointsRequest, project: Project | None, _: Templates) -> Draft:
    project, act = _act(project, request.act_key)
    return Draft(prompts.plot_points(project, act, _count(request.desired_count)), [act])


async def save_plot_points(request: Any, draft: Draft, answer: Any, stage: Stage, path: str) -> dict[str, Any]:
    points = list(answer.plot_points)
    await stage.part("plot_points", draft.act_keys[0], points)
    return {"projectPath": path, "actKey": draft.act_keys[0], "plotPoints": points}


# -- scenes --------------------------------------------------------------------------------------------

def draft_scenes(request: generation_pb2.ScenesRequest, project: Project | None, _: Templates) -> Draft:
    assert project is not None
    keys = [_act(project, request.act_key)[1]] if request.act_key else project.act_keys
    return Draft(prompts.scenes(project, keys, _count(request.desired_count)), keys)


async def save_scenes(request: Any, draft: Draft, answer: BaseModel, stage: Stage, path: str) -> dict[str, Any]:
    scenes = outputs.as_keyed(answer)
    for key, items in scenes.items():
        await stage.part("scenes", key, items)
    return {"projectPath": path, "scenes": scenes}


def draft_scene(request: generation_pb2.SceneRequest, project: Project | None, _: Templates) -> Draft:
    project, act = _act(project, request.act_key)
    return Draft(prompts.scene(project, act), [act])


async def save_scene(request: Any, draft: Draft, answer: outputs.Scene, stage: Stage, path: str) -> dict[str, Any]:
    scene = answer.model_dump(mode="json")
    index = await stage.part("scene", draft.act_keys[0], scene)
    return {"projectPath": path, "actKey": draft.act_keys[0], "sceneIndex": index, "scene": scene}


# -- dialogue ------------------------------------------------------------------------------------------

def draft_dialogue(request: generation_pb2.DialogueRequest, project: Project | None, _: Templates) -> Draft:
    project, act = _act(project, request.act_key)
    if not 0 <= request.scene_index < len(project.scenes.get(act, [])):
        raise SceneNotFound(f"Scene {request.scene_index} not found in act '{act}'")
    return Draft(prompts.dialogue(project, act, request.scene_index), [act])


async def save_dialogue(request: Any, draft: Draft, answer: str, stage: Stage, path: str) -> dict[str, Any]:
    act, index = draft.act_keys[0], request.scene_index
    await stage.part("dialogue", act, answer, scene_index=index)
    return {"projectPath": path, "actKey": act, "sceneIndex": index, "dialogue": answer}


# -- character profiles --------------------------------------------------------------------------------

def draft_characters(request: generation_pb2.CharactersRequest, project: Project | None, _: Templates) -> Draft:
    assert project is not None
    return Draft(prompts.characters(project))


async def save_characters(request: Any, draft: Draft, answer: outputs.Characters, stage: Stage, path: str
                          ) -> dict[str, Any]:
    characters = answer.model_dump(mode="json")["characters"]
    await stage.part("characters", "", characters)
    return {"projectPath": path, "characters": characters}


KINDS: dict[str, Kind] = {kind.field: kind for kind in [
    Kind("structure", "/api/generate-structure", Decimal(10), 3000, False,
         Tool("record_structure", "Record the story's structure: one entry per act of the template, keyed by act key."),
         draft_structure, lambda request, acts: outputs.structure(acts), save_structure),
    Kind("structure_custom", "/api/generate-structure-custom", Decimal(10), 3000, False,
         Tool("record_structure", "Record the story's structure: one entry per act of the template, keyed by act key."),
         draft_structure_custom, lambda request, acts: outputs.structure(acts), save_structure),
    Kind("plot_points", "/api/generate-plot-points-for-act", Decimal(5), 1500, True,
         Tool("record_plot_points", "Record the plot points of one act, in story order."),
         draft_plot_points, lambda request, acts: outputs.plot_points(request.desired_count or None),
         save_plot_points),
    Kind("scenes", "/api/generate-scenes", Decimal(5), 4000, True,
         Tool("record_scenes", "Record the scenes of each requested act, in story order."),
         draft_scenes, lambda request, acts: outputs.scenes(acts, request.desired_count or None), save_scenes),
    Kind("scene", "/api/generate-scene", Decimal(3), 1000, True,
         Tool("record_scene", "Record one new scene for the act."),
         draft_scene, lambda request, acts: outputs.Scene, save_scene),
    Kind("dialogue", "/api/generate-dialogue", Decimal(5), 2500, True, None, draft_dialogue,
         lambda request, acts: None, save_dialogue),
    Kind("characters", "/api/generate-characters", Decimal(3), 2000, True,
         Tool("record_characters", "Record the profile of each character of the story."),
         draft_characters, lambda request, acts: outputs.Characters, save_characters),
]}


def kind_of(request: generation_pb2.GenerateRequest) -> tuple[Kind, Any]:
    """The request's kind and its own part of the request."""
    name = request.WhichOneof("kind")
    if name is None or name not in KINDS:
        raise InvalidGenerationInput("unknown generation kind")
    return KINDS[name], getattr(request, name)

