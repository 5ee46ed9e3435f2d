"""The writer's studio: projects, a new project (the structure step), the steps after it, the screenplay,
exports and deletion. Every read and action is a REST route's own function (edge/routes/projects.py and,
through edge/web/steps.py, edge/routes/generate.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.responses import RedirectResponse

from edge.deps import Clients, Settings
from edge.errors import ApiError
from edge.routes import projects
from edge.web import steps
from edge.web.pages import data, problem, render
from edge.web.session import Poster, Visitor, WebCaller

router = APIRouter(prefix="/app", include_in_schema=False)


async def _form(request: Request) -> dict[str, Any]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@router.get("")
async def home(request: Request, clients: Clients, who: Visitor) -> Response:
    listed = data(await projects.list_projects(clients, who.caller))
    return render(request, "studio.html", who, projects=listed["projects"])


@router.get("/projects/new")
async def new_project(request: Request, clients: Clients, who: Visitor) -> Response:
    return await _new_project_page(request, clients, who)


async def _new_project_page(request: Request, clients: Clients, who: WebCaller, *, status: int = 200,
                            form: dict[str, Any] | None = None, error: ApiError | None = None) -> Response:
    templates = data(await projects.list_templates(clients, who.caller))["templates"]
    return render(request, "new_project.html", who, status=status, templates=templates, form=form or {},
                  idem=uuid.uuid4().hex, story_fields=steps.STORY_FIELDS,
                  problem=problem(error) if error else None)


@router.post("/quote")
async def quote(request: Request, clients: Clients, settings: Settings, who: Poster) -> Response:
    """A step's minimum and worst-case hold, before it is run (a fragment for the step's form)."""
    form = await _form(request)
    step = steps.step_from_form(form, form.get("project", ""))
    try:
        answer = data(await steps.run(step, clients, settings, who.caller, quoting=True))
    except ApiError as exc:
        return render(request, "_quote.html", who, quote=None, problem=problem(exc))
    return render(request, "_quote.html", who, quote=answer)


@router.post("/projects")
async def create_project(request: Request, clients: Clients, settings: Settings, who: Poster) -> Response:
    """The structure step: it creates the project (metered, as POST /api/generate-structure)."""
    form = await _form(request)
    step = steps.step_from_form({**form, "kind": "structure"})
    try:
        answer = data(await steps.run(step, clients, settings, who.caller,
                                      idempotency_key=form.get("idem") or None,
                                      fault=request.headers.get("x-sim-fault")))
    except ApiError as exc:
        return await _new_project_page(request, clients, who, status=exc.status, form=form, error=exc)
    return await _project_page(request, clients, who, answer["projectPath"], done=_done(step, answer))


def _done(step: steps.Step, answer: dict[str, Any]) -> dict[str, Any]:
    usage = answer.get("usage", {})
    return {"step": step, "charged": usage.get("credits_charged"), "balance": usage.get("credits_remaining"),
            "request_id": answer.get("requestId"),
            "tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0)}


@router.get("/projects/{project_path}")
async def project(request: Request, project_path: str, clients: Clients, who: Visitor) -> Response:
    return await _project_page(request, clients, who, project_path)


async def _project_page(request: Request, clients: Clients, who: WebCaller, project_path: str, *,
                        status: int = 200, done: dict[str, Any] | None = None,
                        error: ApiError | None = None) -> Response:
    document = data(await projects.get_project(project_path, clients, who.caller))
    if done is not None:
        done["label"] = done["step"].label({a["key"]: a["name"] for a in document["template"]["acts"]})
    screenplay = await projects.export_project(project_path, clients, who.caller, format="fountain")
    return render(request, "project.html", who, status=status, project=document,
                  screenplay=bytes(screenplay.body).decode("utf-8"), done=done,
                  problem=problem(error) if error else None, idem=uuid.uuid4().hex)


@router.post("/projects/{project_path}/steps")
async def run_step(request: Request, project_path: str, clients: Clients, settings: Settings,
                   who: Poster) -> Response:
    """One metered step, then the project page with what it charged (or why it did not run)."""
    form = await _form(request)
    step = steps.step_from_form(form, project_path)
    try:
        answer = data(await steps.run(step, clients, settings, who.caller, idempotency_key=form.get("idem") or None,
                                      fault=request.headers.get("x-sim-fault")))
    except ApiError as exc:
        return await _project_page(request, clients, who, project_path, status=exc.status, error=exc)
    return await _project_page(request, clients, who, project_path, done=_done(step, answer))


@router.get("/projects/{project_path}/export")
async def export(project_path: str, clients: Clients, who: Visitor,
                 format: Annotated[Literal["fountain", "text", "json"], Query()] = "fountain") -> Response:
    return await projects.export_project(project_path, clients, who.caller, format=format)


@router.post("/projects/{project_path}/delete")
async def delete(project_path: str, clients: Clients, who: Poster) -> Response:
    await projects.delete_project(project_path, clients, who.caller)
    return RedirectResponse("/app", status_code=303)
