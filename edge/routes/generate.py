"""The guide's metered generation endpoints. Each validates its body, then runs `pipeline.run_metered`."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response

from common.idempotency_key import MAX_LENGTH, PATTERN
from edge.pipeline import MeteredCall, run_metered
from edge.request_json import JsonRoute
from edge.responses import Generated
from edge.schemas import (
    DialogueBody,
    GenerationOptions,
    PlotPointsBody,
    SceneBody,
    ScenesBody,
    StructureBody,
    StructureCustomBody,
)
from edge.security import Caller, current_user
from protos import generation_pb2

router = APIRouter(prefix="/api", tags=["generation"], route_class=JsonRoute)
User = Annotated[Caller, Depends(current_user)]
SimFault = Annotated[str | None, Header(alias="X-Sim-Fault", max_length=64)]
#: A retry with the same key (and body) answers the first result and is charged once (see pipeline.py).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_LENGTH,
                                              pattern=PATTERN)]
Kind = generation_pb2.Kind

#: The guide's minimum hold per endpoint, in credits.
MINIMUMS = {
    "/api/generate-structure": Decimal(10),
    "/api/generate-structure-custom": Decimal(10),
    "/api/generate-plot-points-for-act": Decimal(5),
    "/api/generate-scenes": Decimal(5),
    "/api/generate-scene": Decimal(3),
    "/api/generate-dialogue": Decimal(5),
}


def _request(kind: generation_pb2.Kind, options: GenerationOptions | None, fault: str | None, **fields: object) -> (
    generation_pb2.GenerateRequest
):
    return generation_pb2.GenerateRequest(
        kind=kind,
        model=(options.model if options else None) or "",
        max_tokens=(options.max_tokens if options else None) or 0,
        simulator_fault=fault or "",
        **fields,  # type: ignore[arg-type]
    )


async def _run(request: Request, caller: Caller, endpoint: str, gen: generation_pb2.GenerateRequest,
               idempotency_key: str | None) -> Response:
    metered = MeteredCall(endpoint, MINIMUMS[endpoint], gen, idempotency_key)
    return await run_metered(request.app.state.clients, request.app.state.settings, caller, metered)


@router.post("/generate-structure", response_model=Generated)
async def generate_structure(
    body: StructureBody, request: Request, caller: User, fault: SimFault = None, idem: IdempotencyKey = None
) -> Response:
    gen = _request(Kind.STRUCTURE, body, fault, story_input_json=json.dumps(body.story_input),
                   template_id=body.template)
    return await _run(request, caller, "/api/generate-structure", gen, idem)


@router.post("/generate-structure-custom", response_model=Generated)
async def generate_structure_custom(
    body: StructureCustomBody, request: Request, caller: User, fault: SimFault = None, idem: IdempotencyKey = None
) -> Response:
    gen = _request(Kind.STRUCTURE_CUSTOM, body, fault, story_input_json=json.dumps(body.story_input),
                   custom_template_json=body.template.model_dump_json())
    return await _run(request, caller, "/api/generate-structure-custom", gen, idem)


@router.post("/generate-plot-points-for-act/{project_path}/{act_key}", response_model=Generated)
async def generate_plot_points(
    project_path: str, act_key: str, request: Request, caller: User,
    body: Annotated[PlotPointsBody | None, Body()] = None, fault: SimFault = None, idem: IdempotencyKey = None,
) -> Response:
    gen = _request(Kind.PLOT_POINTS, body, fault, project_path=project_path, act_key=act_key,
                   desired_scene_count=(body.desired_scene_count if body else None) or 0)
    return await _run(request, caller, "/api/generate-plot-points-for-act", gen, idem)


@router.post("/generate-scenes", response_model=Generated)
async def generate_scenes(
    body: ScenesBody, request: Request, caller: User, fault: SimFault = None, idem: IdempotencyKey = None
) -> Response:
    gen = _request(Kind.SCENES, body, fault, project_path=body.project_path, act_key=body.act_key or "",
                   desired_scene_count=body.desired_scene_count or 0)
    return await _run(request, caller, "/api/generate-scenes", gen, idem)


@router.post("/generate-scene/{project_path}/{structure_key}", response_model=Generated)
async def generate_scene(
    project_path: str, structure_key: str, request: Request, caller: User,
    body: Annotated[SceneBody | None, Body()] = None, fault: SimFault = None, idem: IdempotencyKey = None,
) -> Response:
    gen = _request(Kind.SCENE, body, fault, project_path=project_path, act_key=structure_key)
    return await _run(request, caller, "/api/generate-scene", gen, idem)


@router.post("/generate-dialogue", response_model=Generated)
async def generate_dialogue(
    body: DialogueBody, request: Request, caller: User, fault: SimFault = None, idem: IdempotencyKey = None
) -> Response:
    gen = _request(Kind.DIALOGUE, body, fault, project_path=body.project_path, act_key=body.structure_key,
                   scene_index=body.scene_index)
    return await _run(request, caller, "/api/generate-dialogue", gen, idem)
