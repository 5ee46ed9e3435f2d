"""The studio's generation steps, each run through the REST route that serves it (edge/routes/generate.py):
the same validation, the same metered pipeline (hold → Claude → commit or release), the same errors. A
quote is the same route with `quoting=True`: Prepare only, nothing held."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Response

from edge.clients import ServiceClients
from edge.deps import MAX_FAULT_LENGTH
from edge.errors import ApiError
from edge.routes import generate
from edge.schemas import CharactersBody, DialogueBody, ScenesBody, StructureBody
from edge.security import Caller
from edge.settings import EdgeSettings
from edge.web.common_forms import validated

Kind = Literal["structure", "plot_points", "scenes", "dialogue", "characters"]
KINDS: tuple[Kind, ...] = ("structure", "plot_points", "scenes", "dialogue", "characters")
#: The story fields the new-project form asks for, in its order.
STORY_FIELDS = ("title", "logline", "characters", "genre", "tone")


@dataclass(frozen=True, slots=True)
class Step:
    kind: Kind
    project: str = ""
    act: str = ""
    scene: int = 0
    template: str = ""
    story: tuple[tuple[str, str], ...] = ()

    def label(self, act_names: dict[str, str] | None = None) -> str:
        """What the page calls the step, with the act's name when it is known."""
        act = (act_names or {}).get(self.act, self.act)
        return {"structure": "Structure", "plot_points": f"Plot points for {act}", "scenes": f"Scenes for {act}",
                "dialogue": f"Dialogue for {act} scene {self.scene + 1}", "characters": "Character profiles"}[self.kind]


def step_from_form(form: dict[str, Any], project: str = "") -> Step:
    """A step as a form names it; an unknown kind or a malformed field is a 422, as the API would answer."""
    kind = form.get("kind", "")
    if kind not in KINDS:
        raise ApiError(422, "Invalid request", "Unknown step", fields=[{"field": "kind", "message": "unknown step"}])
    try:
        scene = int(form.get("scene") or 0)
    except ValueError:
        raise ApiError(422, "Invalid request", "scene must be a number",
                       fields=[{"field": "scene", "message": "must be a number"}]) from None
    story = tuple((name, str(form.get(name, "")).strip()) for name in STORY_FIELDS if str(form.get(name, "")).strip())
    return Step(kind, project, str(form.get("act", "")), scene, str(form.get("template", "")), story)


async def run(step: Step, clients: ServiceClients, settings: EdgeSettings, caller: Caller, *,
              idempotency_key: str | None = None, quoting: bool = False, fault: str | None = None) -> Response:
    """The step's REST route, called as FastAPI would call it. `fault` is the page request's X-Sim-Fault
    header, honoured exactly as the API honours it (tests only: against the simulator or with
    FSG_FAULT_INJECTION)."""
    if fault is not None and len(fault) > MAX_FAULT_LENGTH:
        fault = None
    common: dict[str, Any] = {"clients": clients, "settings": settings, "caller": caller, "fault": fault,
                              "idem": idempotency_key, "quoting": quoting}
    if step.kind == "structure":
        body = validated(StructureBody, {"storyInput": dict(step.story), "template": step.template})
        return await generate.generate_structure(body, **common)
    if step.kind == "plot_points":
        return await generate.generate_plot_points(step.project, step.act, body=None, **common)
    if step.kind == "scenes":
        scenes = validated(ScenesBody, {"projectPath": step.project, "actKey": step.act})
        return await generate.generate_scenes(scenes, **common)
    if step.kind == "dialogue":
        dialogue = validated(DialogueBody, {"projectPath": step.project, "structureKey": step.act,
                                            "sceneIndex": step.scene})
        return await generate.generate_dialogue(dialogue, **common)
    return await generate.generate_characters(validated(CharactersBody, {"projectPath": step.project}), **common)
