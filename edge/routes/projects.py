"""Templates, models and a user's projects (read, delete, export). Not metered; a key is required."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from edge import responses
from edge.deps import Clients
from edge.json import DecimalJSONResponse
from edge.request_json import JsonRoute
from edge.security import User
from protos import generation_pb2

router = APIRouter(prefix="/api", tags=["projects"], route_class=JsonRoute)


def _template(t: generation_pb2.Template) -> dict[str, object]:
    return {"id": t.id, "name": t.name, "description": t.description,
            "acts": [{"key": a.key, "name": a.name, "description": a.description} for a in t.acts]}


@router.get("/templates", response_model=responses.Templates)
async def list_templates(clients: Clients, caller: User) -> DecimalJSONResponse:
    reply = await clients.call("generation", clients.generation.ListTemplates, generation_pb2.ListTemplatesRequest())
    return DecimalJSONResponse({"templates": [_template(t) for t in reply.templates]})


@router.get("/templates/{template_id}", response_model=responses.Template)
async def get_template(template_id: str, clients: Clients, caller: User) -> DecimalJSONResponse:
    reply = await clients.call("generation", clients.generation.GetTemplate,
                               generation_pb2.GetTemplateRequest(id=template_id))
    return DecimalJSONResponse(_template(reply))


@router.get("/models", response_model=responses.Models)
async def list_models(clients: Clients, caller: User) -> DecimalJSONResponse:
    reply = await clients.call("generation", clients.generation.ListModels, generation_pb2.ListModelsRequest())
    return DecimalJSONResponse({"models": [
        {"id": m.id, "input_usd_per_mtok": m.input_usd_per_mtok, "output_usd_per_mtok": m.output_usd_per_mtok,
         "default": m.is_default} for m in reply.models]})


@router.get("/projects", response_model=responses.Projects)
async def list_projects(clients: Clients, caller: User) -> DecimalJSONResponse:
    reply = await clients.call("generation", clients.generation.ListProjects,
                               generation_pb2.ListProjectsRequest(user_id=caller.id))
    return DecimalJSONResponse({"projects": [
        {"projectPath": p.project_path, "title": p.title, "template": p.template_id, "created_at": p.created_at,
         "updated_at": p.updated_at} for p in reply.projects]})


@router.get("/projects/{project_path}", response_model=responses.Project)
async def get_project(project_path: str, clients: Clients, caller: User) -> DecimalJSONResponse:
    reply = await clients.call("generation", clients.generation.GetProject,
                               generation_pb2.ProjectRef(user_id=caller.id, project_path=project_path))
    return DecimalJSONResponse(json.loads(reply.project_json))


@router.delete("/projects/{project_path}", response_model=responses.DeletedProject)
async def delete_project(project_path: str, clients: Clients, caller: User) -> DecimalJSONResponse:
    await clients.call("generation", clients.generation.DeleteProject,
                       generation_pb2.ProjectRef(user_id=caller.id, project_path=project_path))
    return DecimalJSONResponse({"message": "Project deleted", "projectPath": project_path})


@router.get("/projects/{project_path}/export", responses=responses.EXPORT)
async def export_project(
    project_path: str, clients: Clients, caller: User,
    format: Annotated[Literal["fountain", "text", "json"], Query()] = "fountain",
) -> Response:
    reply = await clients.call("generation", clients.generation.ExportProject,
                               generation_pb2.ExportRequest(user_id=caller.id, project_path=project_path,
                                                            format=format, writer=caller.username))
    return Response(reply.content, media_type=reply.content_type,
                    headers={"Content-Disposition": f'attachment; filename="{reply.filename}"'})
