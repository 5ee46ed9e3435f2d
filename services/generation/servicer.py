"""The Generation gRPC servicer: templates, projects, export, and the two-step metered call."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

import grpc

from common.errors import answer_each
from common.money import ZERO, to_wire
from protos import generation_pb2, generation_pb2_grpc
from services.generation import export, idempotency
from services.generation.claude import ClaudeClient
from services.generation.errors import InvalidGenerationInput
from services.generation.idempotency import IdempotencyStore
from services.generation.planner import Plan, Planner
from services.generation.prompts import SYSTEM
from services.generation.tools import InvalidOutput

log = logging.getLogger(__name__)
State = generation_pb2.IdempotentState
MAX_IDEMPOTENCY_KEY = 255

EXPORT_FORMATS = {
    "fountain": ("text/plain; charset=utf-8", "fountain"),
    "text": ("text/plain; charset=utf-8", "txt"),
    "json": ("application/json", "json"),
}


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, planner: Planner, claude: ClaudeClient, idempotency: IdempotencyStore, *,
                 simulated: bool) -> None:
        self._planner = planner
        self._claude = claude
        self._idempotency = idempotency
        self._simulated = simulated
        self._prepared = PreparedPlans()

    async def Prepare(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.PrepareResponse:
        digest = b""
        if request.idempotency_key:
            _check_idempotent_request(request)
            # A key seen before answers from its record, even if the input would no longer validate
            # (say the project was deleted since): the retry gets the first result.
            digest = idempotency.fingerprint(request)
            found = await self._idempotency.find(request, digest)
            if found is not None:
                return _found_response(found)
        plan = await self._planner.plan(request)
        if request.idempotency_key:
            found = await self._idempotency.claim(request, digest, plan.max_cost)
            if found is not None:
                return _found_response(found)
        self._prepared.put(request, plan)
        return generation_pb2.PrepareResponse(
            model=plan.price.id, max_tokens=plan.max_tokens, input_tokens_bound=plan.input_tokens_bound,
            max_cost=to_wire(plan.max_cost),
            idempotent=State.IDEMPOTENT_NEW if request.idempotency_key else State.IDEMPOTENT_NONE,
        )

    async def PrepareBatch(
        self, request: generation_pb2.PrepareBatchRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.PrepareBatchResponse:
        calls = (self.Prepare(item, context) for item in request.items)
        return generation_pb2.PrepareBatchResponse(
            items=await answer_each(calls, generation_pb2.PrepareOutcome, generation_pb2.ItemStatus))

    async def Execute(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ExecuteResponse:
        # The plan Prepare made (and the edge held credits for), else plan again (another replica, expired).
        plan = self._prepared.pop(request) or await self._planner.plan(request)
        headers = {"x-sim-fault": request.simulator_fault} if self._simulated and request.simulator_fault else None
        reply = await self._claude.call(
            model=plan.price.id, max_tokens=plan.max_tokens, system=SYSTEM, prompt=plan.prompt, tool=plan.tool,
            extra_headers=headers,
        )
        cost = plan.price.cost(reply.input_tokens, reply.output_tokens) if reply.ok else ZERO
        response = generation_pb2.ExecuteResponse(
            model=plan.price.id, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cost=to_wire(cost), provider_request_id=reply.request_id,
            project_path=plan.project["project_path"] if plan.project else "",
        )
        if not reply.ok:
            log.warning("claude call failed: %s (%s)", reply.error_type, reply.error_message)
            response.ok = False
            response.error_type = reply.error_type
            response.error_message = reply.error_message
            response.retry_after_seconds = reply.retry_after_seconds
            return response
        try:
            result = await self._planner.save(plan, request.user_id, reply.tool_input, reply.text)
        except InvalidOutput as exc:
            log.warning("claude output rejected: %s", exc)
            response.ok = False
            response.error_type = "invalid_output"
            # Not retried (see retry.py); the attempt count still says how the provider got there.
            response.error_message = f"{exc} (after {reply.attempts} attempt{'s' if reply.attempts != 1 else ''})"
            return response
        response.ok = True
        response.result_json = json.dumps(result, ensure_ascii=False)
        response.project_path = result["projectPath"]
        if request.idempotency_key and not await self._idempotency.mark_executed(request, response):
            # Our claim was taken over after its lease ran out: the edge must not charge for this attempt.
            log.warning("idempotency claim of hold %s lost before its result was recorded", request.hold_id)
            return generation_pb2.ExecuteResponse(
                ok=False, error_type="superseded", model=response.model, input_tokens=response.input_tokens,
                output_tokens=response.output_tokens, cost=response.cost,
                error_message="Another attempt with the same Idempotency-Key took over this request",
            )
        return response

    async def CompleteIdempotent(
        self, request: generation_pb2.CompleteIdempotentRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.IdempotentAck:
        return generation_pb2.IdempotentAck(ok=await self._idempotency.complete(request.ref, request.response))

    async def AbandonIdempotent(
        self, request: generation_pb2.IdempotentRef, context: grpc.aio.ServicerContext
    ) -> generation_pb2.IdempotentAck:
        return generation_pb2.IdempotentAck(ok=await self._idempotency.abandon(request))

    async def ListTemplates(
        self, request: generation_pb2.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListTemplatesResponse:
        return generation_pb2.ListTemplatesResponse(
            templates=[_template_message(t.model_dump()) for t in self._planner.templates.list()]
        )

    async def GetTemplate(
        self, request: generation_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.Template:
        return _template_message(self._planner.template(request.id))

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
        return generation_pb2.ProjectDocument(project_json=json.dumps(project, ensure_ascii=False))

    async def DeleteProject(
        self, request: generation_pb2.ProjectRef, context: grpc.aio.ServicerContext
    ) -> generation_pb2.DeleteProjectResponse:
        await self._planner.projects.delete(request.user_id, request.project_path)
        return generation_pb2.DeleteProjectResponse(deleted=True)

    async def ExportProject(
        self, request: generation_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ExportResponse:
        if request.format not in EXPORT_FORMATS:
            raise InvalidGenerationInput("format must be one of fountain, text, json")
        project = await self._planner.projects.get(request.user_id, request.project_path)
        content_type, extension = EXPORT_FORMATS[request.format]
        if request.format == "fountain":
            content = export.to_fountain(project)
        elif request.format == "text":
            content = export.to_text(project)
        else:
            content = json.dumps(export.to_json(project), ensure_ascii=False, indent=2)
        return generation_pb2.ExportResponse(
            content=content, content_type=content_type, filename=f"{project['project_path']}.{extension}"
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


class PreparedPlans:
    """Plans made by Prepare, kept briefly for the Execute of the same request so it neither reads the
    project nor builds the prompt again, and sends exactly the prompt whose worst case was held."""

    def __init__(self, ttl_seconds: float = 300.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._plans: OrderedDict[tuple[str, int], tuple[float, bytes, Plan]] = OrderedDict()

    @staticmethod
    def _key(request: generation_pb2.GenerateRequest) -> tuple[tuple[str, int], bytes]:
        fingerprint = request.SerializeToString(deterministic=True)
        return (request.request_id, request.user_id), fingerprint

    def put(self, request: generation_pb2.GenerateRequest, plan: Plan) -> None:
        if not request.request_id:
            return
        key, fingerprint = self._key(request)
        self._plans[key] = (time.monotonic() + self._ttl, fingerprint, plan)
        while len(self._plans) > self._max:
            self._plans.popitem(last=False)

    def pop(self, request: generation_pb2.GenerateRequest) -> Plan | None:
        key, fingerprint = self._key(request)
        entry = self._plans.pop(key, None)
        if entry is None or entry[0] < time.monotonic() or entry[1] != fingerprint:
            return None
        return entry[2]


def _check_idempotent_request(request: generation_pb2.GenerateRequest) -> None:
    if not 1 <= len(request.idempotency_key) <= MAX_IDEMPOTENCY_KEY or not request.idempotency_key.isprintable():
        raise InvalidGenerationInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    try:
        uuid.UUID(request.hold_id)
    except ValueError as exc:
        raise InvalidGenerationInput("hold_id must be a UUID when an idempotency key is given") from exc
    if request.idempotency_lease_seconds <= 0:
        raise InvalidGenerationInput("idempotency_lease_seconds must be positive")


def _found_response(found: idempotency.Found) -> generation_pb2.PrepareResponse:
    response = generation_pb2.PrepareResponse(retry_after_seconds=found.retry_after_seconds)
    response.idempotent = found.state  # type: ignore[assignment]
    if found.stored is not None:
        response.stored.CopyFrom(found.stored)
    if found.executed is not None:
        response.executed.CopyFrom(found.executed)
        response.model = found.executed.model
    if found.max_cost is not None:
        response.max_cost = to_wire(found.max_cost)
    return response


def _template_message(t: dict[str, Any]) -> generation_pb2.Template:
    return generation_pb2.Template(
        id=t["id"], name=t["name"], description=t.get("description", ""),
        acts=[generation_pb2.TemplateAct(key=a["key"], name=a["name"], description=a.get("description", ""))
              for a in t["acts"]],
    )
