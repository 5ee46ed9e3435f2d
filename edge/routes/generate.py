"""The guide's metered generation endpoints. Each validates its body, builds its kind's typed request and
runs `pipeline.run_metered`; everything else about a kind (its price floor, prompt, output model and how it
is saved) is its entry in services/generation/kinds.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

from edge.clients import ServiceClients
from edge.deps import Clients, IdempotencyKeyHeader, Settings, SimFault
from edge.json import DecimalJSONResponse
from edge.pipeline import MeteredCall, quote, run_metered
from edge.request_json import JsonRoute
from edge.responses import Generated, Quote
from edge.schemas import (
    CharactersBody,
    DialogueBody,
    GenerationOptions,
    PlotPointsBody,
    SceneBody,
    ScenesBody,
    StructureBody,
    StructureCustomBody,
)
from edge.security import Caller, User
from edge.settings import EdgeSettings
from protos import generation_pb2

router = APIRouter(prefix="/api", tags=["generation"], route_class=JsonRoute)
#: The same routes under /api/quote/…: the same body, validated and planned the same way (Prepare), answered
#: with the call's minimum and worst-case hold instead of being run. Nothing is held or charged.
quotes = APIRouter(prefix="/api/quote", tags=["generation"], route_class=JsonRoute)


async def _quoting(request: Request) -> bool:
    return str(request.scope["route"].path).startswith(quotes.prefix)


Quoting = Annotated[bool, Depends(_quoting)]


def _struct(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(value)
    return struct


def _request(options: GenerationOptions | None, fault: str | None, **kind: Message) -> generation_pb2.GenerateRequest:
    """The metered call's request: the shared options, then exactly one kind's own request."""
    return generation_pb2.GenerateRequest(
        model=(options.model if options else None) or "",
        max_tokens=(options.max_tokens if options else None) or 0,
        simulator_fault=fault or "",
        **kind,  # type: ignore[arg-type]
    )


async def _run(clients: ServiceClients, settings: EdgeSettings, caller: Caller,
               gen: generation_pb2.GenerateRequest, idempotency_key: str | None, quoting: bool) -> Response:
    if quoting:
        return DecimalJSONResponse(await quote(clients, caller, gen))
    return await run_metered(clients, settings, caller, MeteredCall(gen, idempotency_key))


@router.post("/generate-structure", response_model=Generated)
@quotes.post("/generate-structure", response_model=Quote)
async def generate_structure(
    body: StructureBody, clients: Clients, settings: Settings, caller: User, fault: SimFault = None,
    idem: IdempotencyKeyHeader = None, quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.StructureRequest(story_input=_struct(body.story_input), template_id=body.template)
    return await _run(clients, settings, caller, _request(body, fault, structure=kind), idem, quoting)


@router.post("/generate-structure-custom", response_model=Generated)
@quotes.post("/generate-structure-custom", response_model=Quote)
async def generate_structure_custom(
    body: StructureCustomBody, clients: Clients, settings: Settings, caller: User, fault: SimFault = None,
    idem: IdempotencyKeyHeader = None, quoting: Quoting = False,
) -> Response:
    template = generation_pb2.Template(
        id="custom", name=body.template.name, description=body.template.description,
        acts=[generation_pb2.TemplateAct(key=a.key, name=a.name, description=a.description)
              for a in body.template.acts])
    kind = generation_pb2.StructureCustomRequest(story_input=_struct(body.story_input), template=template)
    return await _run(clients, settings, caller, _request(body, fault, structure_custom=kind), idem, quoting)


@router.post("/generate-plot-points-for-act/{project_path}/{act_key}", response_model=Generated)
@quotes.post("/generate-plot-points-for-act/{project_path}/{act_key}", response_model=Quote)
async def generate_plot_points(
    project_path: str, act_key: str, clients: Clients, settings: Settings, caller: User,
    body: Annotated[PlotPointsBody | None, Body()] = None, fault: SimFault = None, idem: IdempotencyKeyHeader = None,
    quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.PlotPointsRequest(project_path=project_path, act_key=act_key,
                                            desired_count=(body.desired_scene_count if body else None) or 0)
    return await _run(clients, settings, caller, _request(body, fault, plot_points=kind), idem, quoting)


@router.post("/generate-scenes", response_model=Generated)
@quotes.post("/generate-scenes", response_model=Quote)
async def generate_scenes(
    body: ScenesBody, clients: Clients, settings: Settings, caller: User, fault: SimFault = None,
    idem: IdempotencyKeyHeader = None, quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.ScenesRequest(project_path=body.project_path, act_key=body.act_key or "",
                                        desired_count=body.desired_scene_count or 0)
    return await _run(clients, settings, caller, _request(body, fault, scenes=kind), idem, quoting)


@router.post("/generate-scene/{project_path}/{structure_key}", response_model=Generated)
@quotes.post("/generate-scene/{project_path}/{structure_key}", response_model=Quote)
async def generate_scene(
    project_path: str, structure_key: str, clients: Clients, settings: Settings, caller: User,
    body: Annotated[SceneBody | None, Body()] = None, fault: SimFault = None, idem: IdempotencyKeyHeader = None,
    quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.SceneRequest(project_path=project_path, act_key=structure_key)
    return await _run(clients, settings, caller, _request(body, fault, scene=kind), idem, quoting)


@router.post("/generate-dialogue", response_model=Generated)
@quotes.post("/generate-dialogue", response_model=Quote)
async def generate_dialogue(
    body: DialogueBody, clients: Clients, settings: Settings, caller: User, fault: SimFault = None,
    idem: IdempotencyKeyHeader = None, quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.DialogueRequest(project_path=body.project_path, act_key=body.structure_key,
                                          scene_index=body.scene_index)
    return await _run(clients, settings, caller, _request(body, fault, dialogue=kind), idem, quoting)


@router.post("/generate-characters", response_model=Generated)
@quotes.post("/generate-characters", response_model=Quote)
async def generate_characters(
    body: CharactersBody, clients: Clients, settings: Settings, caller: User, fault: SimFault = None,
    idem: IdempotencyKeyHeader = None, quoting: Quoting = False,
) -> Response:
    kind = generation_pb2.CharactersRequest(project_path=body.project_path)
    return await _run(clients, settings, caller, _request(body, fault, characters=kind), idem, quoting)
