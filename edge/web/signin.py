"""Sign-in and sign-out: an API key posted once, exchanged for a session cookie; sign-out ends it in auth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from starlette.responses import RedirectResponse

from edge.deps import Clients
from edge.errors import ApiError
from edge.web.pages import render
from edge.web.session import COOKIE, COOKIE_PATH, Poster, same_origin
from protos import auth_pb2

router = APIRouter(prefix="/app", include_in_schema=False)


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return render(request, "sign_in.html", None)


@router.post("/sign-in")
async def sign_in(request: Request, clients: Clients,
                  api_key: Annotated[str, Form(max_length=200)] = "") -> Response:
    """No session yet, so no session's CSRF token: SameSite and the Origin check stop another site from
    signing a visitor in as someone else."""
    if not same_origin(request):
        raise ApiError(403, "CSRF check failed", "Sign in from this site's own page")
    reply = await clients.call("auth", clients.auth.CreateSession,
                               auth_pb2.CreateSessionRequest(api_key=api_key.strip()))
    if not reply.valid:
        # The key is not echoed: the field comes back empty.
        return render(request, "sign_in.html", None, status=401,
                      problem={"error": "That API key was not accepted",
                               "message": "Check that you pasted the whole key, and that it has not been rotated."})
    response = RedirectResponse("/app", status_code=303)
    expires = datetime.fromisoformat(reply.expires_at)
    response.set_cookie(COOKIE, reply.token, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        max_age=max(1, int((expires - datetime.now(UTC)).total_seconds())))
    return response


@router.post("/sign-out")
async def sign_out(request: Request, clients: Clients, who: Poster) -> Response:
    await clients.call("auth", clients.auth.EndSession, auth_pb2.SessionToken(token=request.cookies.get(COOKIE, "")))
    response = RedirectResponse("/app/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
