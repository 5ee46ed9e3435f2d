"""The Generation gRPC servicer: templates, projects, export, and the two steps of a metered call.

Prepare answers a Plan and keeps nothing; Execute runs the Plan the edge hands back. So any replica can
execute any plan, and there is no per-process state to lose or to disagree about.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import grpc

from common import faults
from common.errors import answer_each
from common.faults import FaultPoint
from common.money import ZERO, InvalidAmount, parse_credits, to_wire
from common.request_id import each_with_id
from protos import generation_pb2, generation_pb2_grpc
from services.generation.claude import ClaudeClient
from services.generation.errors import InvalidGenerationInput, ProjectNotFound
from services.generation.export import FORMATS
from services.generation.outputs import InvalidOutput
from services.generation.planner import Planner, check_budget, template_message
from services.generation.prompts import SYSTEM

log = logging.getLogger(__name__)

class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, planner: Planner, claude: ClaudeClient, *, simulated: bool,
                 fault_injection: bool = False) -> None:
        self._planner = planner
        self._claude = claude
        self._simulated = simulated
        self._fault_injection = fault_injection

    async def Prepare(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.Plan:
        return (await self._planner.plan(request)).message()

    async def PrepareBatch(
        self, request: generation_pb2.PrepareBatchRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.PrepareBatchResponse:
        calls = each_with_id(request.items, lambda item: self.Prepare(item, context), lambda item: item.request_id,
                             "Prepare")
        return generation_pb2.PrepareBatchResponse(
            items=await answer_each(calls, generation_pb2.PrepareOutcome, generation_pb2.ItemStatus))

    async def Execute(
        self, request: generation_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ExecuteResponse:
        plan = self._planner.from_message(request.plan)
        hold_id = _hold_id(request.hold_id)
        check_budget(plan, _budget(request.budget))
        injected = faults.parse(plan.request.simulator_fault, enabled=self._fault_injection)
        headers = {"x-sim-fault": injected.simulator} if self._simulated and injected.simulator else None
        reply = await self._claude.call(
            model=plan.price.id, max_tokens=plan.max_tokens, system=SYSTEM, prompt=plan.draft.prompt,
            tool=plan.tool, extra_headers=headers,
        )
        cost = plan.price.cost(reply.input_tokens, reply.output_tokens) if reply.ok else ZERO
        response = generation_pb2.ExecuteResponse(
            model=plan.price.id, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cost=to_wire(cost), provider_request_id=reply.request_id,
            project_path=getattr(plan.own, "project_path", ""),
        )
        if not reply.ok:
            log.warning("claude call failed: %s (%s)", reply.error_type, reply.error_message)
            response.ok = False
            response.error_type = reply.error_type
            response.error_message = reply.error_message
            response.retry_after_seconds = reply.retry_after_seconds
            return response
        try:
            result = await self._planner.save(plan, hold_id, reply.tool_input, reply.text)
        except InvalidOutput as exc:
            log.warning("claude output rejected: %s", exc)
            response.ok = False
            response.error_type = "invalid_output"
            # Not retried (see retry.py); the attempt count still says how the provider got there.
            response.error_message = f"{exc} (after {reply.attempts} attempt{'s' if reply.attempts != 1 else ''})"
            return response
        except ProjectNotFound:
            response.ok = False
            response.error_type = "conflict"
            response.error_message = "The project was deleted while its call ran"
            return response
        await injected.hit(FaultPoint.CRASH_AFTER_SAVE)
        await injected.hit(FaultPoint.STALL_AFTER_SAVE)
        response.ok = True
        response.result_json = json.dumps(result, ensure_ascii=False)
        response.project_path = result["projectPath"]
        return response

    async def ListTemplates(
        self, request: generation_pb2.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListTemplatesResponse:
        return generation_pb2.ListTemplatesResponse(
            templates=[template_message(t) for t in self._planner.templates.list()]
        )

    async def GetTemplate(
        self, request: generation_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.Template:
        return template_message(self._planner.template(request.id))

    async def ListProjects(
        self, request: generation_pb2.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListProjectsResponse:
        rows = await self._planner.projects.list(request.user_id)
        return generation_pb2.ListProjectsResponse(
            projects=[
                generation_pb2.ProjectSummary(
                    project_path=r["project_path"], title=r["title"], template_id=r["template_id"] or "",
                    created_at=r["created_at"].isoformat(), updated_at=r["updated_at"].isoformat(),
                )
                for r in rows
            ]
        )

    async def GetProject(
        self, request: generation_pb2.ProjectRef, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ProjectDocument:
        project = await self._planner.projects.get(request.user_id, request.project_path)
        return generation_pb2.ProjectDocument(project_json=json.dumps(project.document(), ensure_ascii=False))

    async def DeleteProject(
        self, request: generation_pb2.ProjectRef, context: grpc.aio.ServicerContext
    ) -> generation_pb2.DeleteProjectResponse:
        await self._planner.projects.delete(request.user_id, request.project_path)
        return generation_pb2.DeleteProjectResponse(deleted=True)

    async def ExportProject(
        self, request: generation_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ExportResponse:
        export = FORMATS.get(request.format)
        if export is None:
            raise InvalidGenerationInput(f"format must be one of {', '.join(FORMATS)}")
        project = await self._planner.projects.get(request.user_id, request.project_path)
        return generation_pb2.ExportResponse(
            content=export.render(project, request.writer), content_type=export.content_type,
            filename=f"{project.project_path}.{export.extension}",
        )

    async def ListModels(
        self, request: generation_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListModelsResponse:
        prices = self._planner.prices
        return generation_pb2.ListModelsResponse(
            models=[
                generation_pb2.ModelPrice(
                    id=m.id, input_usd_per_mtok=str(m.input_usd_per_mtok),
                    output_usd_per_mtok=str(m.output_usd_per_mtok), is_default=m.id == prices.default,
                )
                for m in prices.models.values()
            ]
        )


def _hold_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidGenerationInput("hold_id must be a UUID") from exc


def _budget(value: str) -> Any:
    try:
        return parse_credits(value)
    except InvalidAmount as exc:
        raise InvalidGenerationInput("budget must be the credits held, a positive decimal") from exc
