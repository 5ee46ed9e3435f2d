"""Mounts the web app on the edge: its routers, its static files (vendored htmx and Chart.js; nothing is
fetched from another site at run time) and its error pages."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse

from edge.errors import ApiError, error_response
from edge.web import console, dashboard, signin, studio
from edge.web.pages import HERE, problem, render
from edge.web.session import SignInRequired


def wants_html(request: Request) -> bool:
    return request.url.path.startswith("/app") and "text/html" in request.headers.get("accept", "")


def install_web(app: FastAPI) -> None:
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="web-static")
    for module in (signin, studio, dashboard, console):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/app/sign-in"})
        return RedirectResponse("/app/sign-in", status_code=303)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if not wants_html(request):
            return error_response(exc)
        # A signed-in visitor's error page keeps the navigation (and its sign-out form).
        who = getattr(request.state, "web_caller", None)
        return render(request, "error.html", who, status=exc.status, problem=problem(exc))
