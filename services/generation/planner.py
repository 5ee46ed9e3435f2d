"""Turns a GenerateRequest into a call plan (validated input, the prompt, the tool, the model and its
worst-case cost) before anything is held or called; and turns Claude's reply into a staged result. What
differs between kinds is their registry entry (services/generation/kinds.py); this module is the same for all.

The plan travels as a `generation_pb2.Plan`: Prepare answers it, the edge holds credits for it and hands it
back to Execute, which runs exactly that prompt. Nothing is kept between the two calls, so any replica can
execute a plan any replica made, and the charge can never exceed what was held for it.

The worst case bounds input tokens by the prompt's UTF-8 byte count (a token covers at least one byte)
plus a fixed allowance for message framing and the tool-use system prompt, and output tokens by
`max_tokens`. It is deliberately pessimistic: the hold is released down to the actual cost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from common.money import to_wire
from protos import generation_pb2
from services.generation import outputs, prompts
from services.generation.errors import InvalidGenerationInput, PlanOverBudget, TemplateNotFound
from services.generation.kinds import Draft, Kind, Templates, kind_of
from services.generation.pricing import ModelPrice, PriceTable
from services.generation.repository import ProjectRepository
from services.generation.templates import (
    InvalidCustomTemplate,
    InvalidTemplateId,
    StoryTemplate,
    TemplateError,
    TemplateStore,
    validate_custom_acts,
)

#: Framing tokens per request beyond the text itself (roles, tool-use system prompt, tool schema wrapper).
INPUT_OVERHEAD_TOKENS = 1024


@dataclass
class Plan:
    request: generation_pb2.GenerateRequest
    kind: Kind
    own: Any  # the kind's own part of the request
    price: ModelPrice
    max_tokens: int
    draft: Draft

    @cached_property
    def output(self) -> type[BaseModel] | None:
        return self.kind.output(self.own, self.draft.act_keys)

    @cached_property
    def tool(self) -> dict[str, Any] | None:
        if self.kind.tool is None or self.output is None:
            return None
        return outputs.tool(self.kind.tool.name, self.kind.tool.description, self.output)

    @cached_property
    def tool_json(self) -> str:
        if self.kind.tool is None or self.output is None:
            return ""
        return outputs.tool_json(self.kind.tool.name, self.kind.tool.description, self.output)

    @cached_property
    def input_tokens_bound(self) -> int:
        text = prompts.SYSTEM + self.draft.prompt + self.tool_json
        return len(text.encode("utf-8")) + INPUT_OVERHEAD_TOKENS

    @cached_property
    def max_cost(self) -> Decimal:
        return self.price.cost(self.input_tokens_bound, self.max_tokens)

    @property
    def required(self) -> Decimal:
        """What the edge holds: the worst case, and never less than the kind's price floor."""
        return max(self.kind.minimum, self.max_cost)

    def message(self) -> generation_pb2.Plan:
        """The plan as Prepare answers it (and Execute receives it back)."""
        return generation_pb2.Plan(
            request=self.request, model=self.price.id, max_tokens=self.max_tokens, prompt=self.draft.prompt,
            tool_json=self.tool_json,
            input_tokens_bound=self.input_tokens_bound, max_cost=to_wire(self.max_cost),
            act_keys=self.draft.act_keys, endpoint=self.kind.endpoint, required=to_wire(self.required),
            minimum=to_wire(self.kind.minimum),
            template=template_message(self.draft.template) if self.draft.template else None,
        )

    def parse(self, tool_input: Any, text: str) -> Any:
        """Claude's answer, checked by the very model whose schema was sent (raises outputs.InvalidOutput)."""
        if self.output is None:
            return outputs.dialogue(text)
        return outputs.parse(self.output, tool_input)


class Planner:
    def __init__(self, prices: PriceTable, templates: TemplateStore, projects: ProjectRepository,
                 max_tokens_cap: int) -> None:
        self.prices = prices
        self.templates = templates
        self.projects = projects
        self.max_tokens_cap = max_tokens_cap
        self._templates = Templates(self.template, _custom_template)

    async def plan(self, request: generation_pb2.GenerateRequest) -> Plan:
        kind, own = kind_of(request)
        if request.user_id <= 0:
            raise InvalidGenerationInput("user_id is required")
        price = self.prices.resolve(request.model)
        max_tokens = request.max_tokens or kind.default_max_tokens
        if not 1 <= max_tokens <= self.max_tokens_cap:
            raise InvalidGenerationInput(f"max_tokens must be between 1 and {self.max_tokens_cap}")
        project = (await self.projects.get(request.user_id, own.project_path, for_planning=True)
                   if kind.needs_project else None)
        return Plan(request, kind, own, price, max_tokens, kind.draft(own, project, self._templates))

    def from_message(self, message: generation_pb2.Plan) -> Plan:
        """The plan Prepare made, as Execute receives it back: its output model rebuilt from the plan alone
        and checked against the tool it sent, its worst case recomputed from its parts."""
        kind, own = kind_of(message.request)
        template = _template_model(message.template) if message.HasField("template") else None
        draft = Draft(message.prompt, list(message.act_keys), template)
        plan = Plan(message.request, kind, own, self.prices.resolve(message.model), message.max_tokens, draft)
        if plan.tool_json != message.tool_json:
            raise InvalidGenerationInput("the plan's tool is not its kind's")
        return plan

    def template(self, template_id: str) -> StoryTemplate:
        """A stored template, with the template store's errors translated to domain errors (once)."""
        try:
            return self.templates.get(template_id)
        except InvalidTemplateId as exc:
            raise InvalidGenerationInput("template is not a valid template id") from exc
        except TemplateError as exc:
            raise TemplateNotFound(f"Template '{template_id[:80]}' not found") from exc

    async def save(self, plan: Plan, hold_id: uuid.UUID, reply_tool_input: Any, reply_text: str) -> dict[str, Any]:
        """Check the model's answer (raises outputs.InvalidOutput) and stage it under the hold that pays for it
        (part of the project once that hold is posted); returns the result object."""
        answer = plan.parse(reply_tool_input, reply_text)
        stage = self.projects.stager(plan.request.user_id, getattr(plan.own, "project_path", ""), hold_id)
        return await plan.kind.save(plan.own, plan.draft, answer, stage, stage.path)


def check_budget(plan: Plan, budget: Decimal) -> None:
    if plan.max_cost > budget:
        raise PlanOverBudget()


def _custom_template(message: generation_pb2.Template) -> StoryTemplate:
    name = message.name.strip() or "Custom"
    if len(name) > 200:
        raise InvalidGenerationInput("customTemplate.name must be 1-200 characters")
    try:
        acts = validate_custom_acts([{"key": a.key, "name": a.name, "description": a.description}
                                     for a in message.acts])
    except InvalidCustomTemplate as exc:
        raise InvalidGenerationInput(f"customTemplate: {exc}") from exc
    return StoryTemplate(id="custom", name=name, description=message.description[:2000], acts=acts)


def template_message(template: StoryTemplate) -> generation_pb2.Template:
    return generation_pb2.Template(
        id=template.id, name=template.name, description=template.description,
        acts=[generation_pb2.TemplateAct(key=a.key, name=a.name, description=a.description) for a in template.acts])


def _template_model(message: generation_pb2.Template) -> StoryTemplate:
    return StoryTemplate(id=message.id, name=message.name, description=message.description,
                         acts=[{"key": a.key, "name": a.name, "description": a.description}  # type: ignore[misc]
                               for a in message.acts])
