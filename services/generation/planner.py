"""Turns a GenerateRequest into a call plan — validated input, the prompt, the tool, the model and its
worst-case cost — before anything is held or called; and turns Claude's reply into a staged result.

The plan travels as a `generation_pb2.Plan`: Prepare answers it, the edge holds credits for its worst case
and hands it back to Execute, which runs exactly that prompt. Nothing is kept between the two calls, so any
replica can execute a plan any replica made, and the charge can never exceed what was held for it.

The worst case bounds input tokens by the prompt's UTF-8 byte count (a token covers at least one byte)
plus a fixed allowance for message framing and the tool-use system prompt, and output tokens by
`max_tokens`. It is deliberately pessimistic: the hold is released down to the actual cost.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from common.money import to_wire
from protos import generation_pb2
from services.generation import prompts, tools
from services.generation.errors import ActNotFound, InvalidGenerationInput, SceneNotFound, TemplateNotFound
from services.generation.pricing import ModelPrice, PriceTable
from services.generation.repository import ProjectRepository
from services.generation.templates import (
    InvalidCustomTemplate,
    InvalidTemplateId,
    TemplateError,
    TemplateStore,
    validate_custom_acts,
)

Kind = generation_pb2.Kind
#: Framing tokens per request beyond the text itself (roles, tool-use system prompt, tool schema wrapper).
INPUT_OVERHEAD_TOKENS = 1024
MAX_STORY_INPUT_BYTES = 16_384
MAX_COUNT = 12
DEFAULT_MAX_TOKENS = {
    Kind.STRUCTURE: 3000,
    Kind.STRUCTURE_CUSTOM: 3000,
    Kind.PLOT_POINTS: 1500,
    Kind.SCENES: 4000,
    Kind.SCENE: 1000,
    Kind.DIALOGUE: 2500,
}


@dataclass
class Plan:
    request: generation_pb2.GenerateRequest
    price: ModelPrice
    max_tokens: int
    prompt: str
    tool: dict[str, Any] | None
    story_input: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    act_keys: list[str] = field(default_factory=list)

    @property
    def kind(self) -> int:
        return self.request.kind

    @property
    def count(self) -> int | None:
        return self.request.desired_scene_count or None

    @cached_property
    def input_tokens_bound(self) -> int:
        text = prompts.SYSTEM + self.prompt + (json.dumps(self.tool) if self.tool else "")
        return len(text.encode("utf-8")) + INPUT_OVERHEAD_TOKENS

    @cached_property
    def max_cost(self) -> Decimal:
        return self.price.cost(self.input_tokens_bound, self.max_tokens)

    def message(self) -> generation_pb2.Plan:
        """The plan as Prepare answers it (and Execute receives it back)."""
        return generation_pb2.Plan(
            request=self.request, model=self.price.id, max_tokens=self.max_tokens, prompt=self.prompt,
            tool_json=json.dumps(self.tool) if self.tool is not None else "",
            input_tokens_bound=self.input_tokens_bound, max_cost=to_wire(self.max_cost), act_keys=self.act_keys,
            template_json=json.dumps(self.template) if self.template else "",
        )


def _story_input(raw: str) -> dict[str, Any]:
    if len(raw.encode()) > MAX_STORY_INPUT_BYTES:
        raise InvalidGenerationInput(f"storyInput is larger than {MAX_STORY_INPUT_BYTES} bytes")
    try:
        story = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise InvalidGenerationInput("storyInput is not valid JSON") from exc
    if not isinstance(story, dict) or not any(isinstance(v, str) and v.strip() for v in story.values()):
        raise InvalidGenerationInput("storyInput must be an object with at least one non-empty text field")
    return story


def story_title(story: dict[str, Any]) -> str:
    for key in ("title", "logline", "premise", "idea"):
        value = story.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    first = next(v for v in story.values() if isinstance(v, str) and v.strip())
    return str(first).strip()[:200]


class Planner:
    def __init__(self, prices: PriceTable, templates: TemplateStore, projects: ProjectRepository,
                 max_tokens_cap: int) -> None:
        self.prices = prices
        self.templates = templates
        self.projects = projects
        self.max_tokens_cap = max_tokens_cap

    async def plan(self, request: generation_pb2.GenerateRequest) -> Plan:
        if request.kind not in DEFAULT_MAX_TOKENS:
            raise InvalidGenerationInput("unknown generation kind")
        if request.user_id <= 0:
            raise InvalidGenerationInput("user_id is required")
        price = self.prices.resolve(request.model)
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS[request.kind]
        if not 1 <= max_tokens <= self.max_tokens_cap:
            raise InvalidGenerationInput(f"max_tokens must be between 1 and {self.max_tokens_cap}")
        count = request.desired_scene_count or None
        if count is not None and not 1 <= count <= MAX_COUNT:
            raise InvalidGenerationInput(f"desiredSceneCount must be between 1 and {MAX_COUNT}")

        if request.kind in (Kind.STRUCTURE, Kind.STRUCTURE_CUSTOM):
            story = _story_input(request.story_input_json)
            template = self._template(request)
            keys = [a["key"] for a in template["acts"]]
            return Plan(request, price, max_tokens, prompts.structure_prompt(story, template),
                        tools.structure_tool(keys), story_input=story, template=template, act_keys=keys)

        project = await self.projects.get(request.user_id, request.project_path, for_planning=True)
        all_keys = [a["key"] for a in project["template"]["acts"]]
        if request.kind == Kind.SCENES:
            if request.act_key:
                self._act(project, request.act_key)
                keys = [request.act_key]
            else:
                keys = all_keys
            return Plan(request, price, max_tokens, prompts.scenes_prompt(project, keys, count),
                        tools.scenes_tool(keys, count), act_keys=keys)
        act_key = self._act(project, request.act_key)
        if request.kind == Kind.PLOT_POINTS:
            return Plan(request, price, max_tokens, prompts.plot_points_prompt(project, act_key, count),
                        tools.plot_points_tool(count), act_keys=[act_key])
        if request.kind == Kind.SCENE:
            return Plan(request, price, max_tokens, prompts.scene_prompt(project, act_key),
                        tools.scene_tool(), act_keys=[act_key])
        scenes = project["scenes"].get(act_key, [])
        if not 0 <= request.scene_index < len(scenes):
            raise SceneNotFound(f"Scene {request.scene_index} not found in act '{act_key}'")
        return Plan(request, price, max_tokens, prompts.dialogue_prompt(project, act_key, request.scene_index),
                    None, act_keys=[act_key])

    def from_message(self, message: generation_pb2.Plan) -> Plan:
        """The plan Prepare made, as Execute receives it back (its worst case recomputed from its parts)."""
        story = json.loads(message.request.story_input_json) if message.request.story_input_json else {}
        return Plan(message.request, self.prices.resolve(message.model), message.max_tokens, message.prompt,
                    json.loads(message.tool_json) if message.tool_json else None, story_input=story,
                    template=json.loads(message.template_json) if message.template_json else {},
                    act_keys=list(message.act_keys))

    def template(self, template_id: str) -> dict[str, Any]:
        """A stored template, with the template store's errors translated to domain errors (once)."""
        try:
            return self.templates.get(template_id).model_dump()
        except InvalidTemplateId as exc:
            raise InvalidGenerationInput("template is not a valid template id") from exc
        except TemplateError as exc:
            raise TemplateNotFound(f"Template '{template_id[:80]}' not found") from exc

    def _template(self, request: generation_pb2.GenerateRequest) -> dict[str, Any]:
        if request.kind == Kind.STRUCTURE:
            return self.template(request.template_id)
        try:
            custom = json.loads(request.custom_template_json or "null")
        except json.JSONDecodeError as exc:
            raise InvalidGenerationInput("customTemplate is not valid JSON") from exc
        if not isinstance(custom, dict) or not isinstance(custom.get("acts"), list):
            raise InvalidGenerationInput("customTemplate must be an object with an 'acts' list")
        name = custom.get("name", "Custom")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise InvalidGenerationInput("customTemplate.name must be 1-200 characters")
        try:
            acts = validate_custom_acts(custom["acts"])
        except InvalidCustomTemplate as exc:
            raise InvalidGenerationInput(f"customTemplate: {exc}") from exc
        return {"id": "custom", "name": name.strip(), "description": str(custom.get("description", ""))[:2000],
                "acts": [a.model_dump() for a in acts]}

    @staticmethod
    def _act(project: dict[str, Any], act_key: str) -> str:
        if act_key not in {a["key"] for a in project["template"]["acts"]}:
            raise ActNotFound(f"Act '{act_key[:80]}' not found in this project")
        return act_key

    async def save(self, plan: Plan, hold_id: uuid.UUID, reply_tool_input: Any, reply_text: str) -> dict[str, Any]:
        """Validate the model's answer (raises tools.InvalidOutput) and stage it under the hold that pays for
        it (part of the project once that hold is posted); returns the result object."""
        user_id, path = plan.request.user_id, plan.request.project_path
        if plan.kind in (Kind.STRUCTURE, Kind.STRUCTURE_CUSTOM):
            structure = tools.validate_structure(reply_tool_input, plan.act_keys)
            path = await self.projects.create(user_id, story_title(plan.story_input), plan.story_input, plan.template,
                                              structure, hold_id)
            return {"projectPath": path, "template": plan.template["id"], "structure": structure}
        act = plan.act_keys[0]
        if plan.kind == Kind.PLOT_POINTS:
            points = tools.validate_plot_points(reply_tool_input, plan.count)
            await self.projects.stage(user_id, path, "plot_points", act, points, hold_id)
            return {"projectPath": path, "actKey": act, "plotPoints": points}
        if plan.kind == Kind.SCENES:
            scenes = tools.validate_scenes(reply_tool_input, plan.act_keys, plan.count)
            for key, items in scenes.items():
                await self.projects.stage(user_id, path, "scenes", key, items, hold_id)
            return {"projectPath": path, "scenes": scenes}
        if plan.kind == Kind.SCENE:
            scene = tools.validate_scene(reply_tool_input)
            index = await self.projects.stage(user_id, path, "scene", act, scene, hold_id)
            return {"projectPath": path, "actKey": act, "sceneIndex": index, "scene": scene}
        dialogue = tools.validate_dialogue(reply_text)
        index = plan.request.scene_index
        await self.projects.stage(user_id, path, "dialogue", act, dialogue, hold_id, scene_index=index)
        return {"projectPath": path, "actKey": act, "sceneIndex": index, "dialogue": dialogue}
