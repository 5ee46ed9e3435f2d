"""Who is looking at a page: the session cookie, resolved by the auth service on every request (so a
sign-out, a rotated key or a disabled user ends the session on every edge at once), and the CSRF check.

The cookie holds a random session token (auth stores only its SHA-256): HttpOnly (no script reads it),
SameSite=Strict (no other site's page sends it), Secure when the page came over TLS, Path=/app. The API key
is posted once on the sign-in form and is never stored in the browser.

CSRF: besides SameSite=Strict, every POST from a page carries a token derived from the session token
(HMAC-SHA-256 keyed with it), in a form field or the X-CSRF-Token header htmx sends. Another site can
neither read the cookie nor the page, so it cannot compute the token; nothing extra is stored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from edge.deps import Clients
from edge.errors import ApiError
from edge.security import Caller
from protos import auth_pb2

COOKIE = "fsg_session"
COOKIE_PATH = "/app"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(Exception):
    """No live session: pages redirect to the sign-in page (edge/web/app.py)."""


class CsrfRefused(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "CSRF check failed",
                         "This form did not come from this site's own page; reload the page and try again")


@dataclass(frozen=True, slots=True)
class WebCaller:
    caller: Caller
    csrf: str


def csrf_for(token: str) -> str:
    return hmac.new(token.encode("utf-8"), b"fsg-web-csrf", hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """A browser names the page a POST came from in Origin; one from another site is refused outright."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def web_caller(request: Request, clients: Clients) -> WebCaller:
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise SignInRequired()
    reply = await clients.call("auth", clients.auth.ResolveSession, auth_pb2.SessionToken(token=token))
    if not reply.valid:
        raise SignInRequired()
    caller = Caller(id=reply.user.id, username=reply.user.username, is_admin=reply.user.is_admin)
    request.state.caller = caller  # the access log's user id
    request.state.web_caller = who = WebCaller(caller, csrf_for(token))
    return who


async def checked_caller(request: Request, who: Annotated[WebCaller, Depends(web_caller)]) -> WebCaller:
    """`web_caller` for a state-changing request: the same origin and the session's CSRF token, or 403."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not same_origin(request) or not sent or not hmac.compare_digest(sent, who.csrf):
        raise CsrfRefused()
    return who


async def admin_caller(who: Annotated[WebCaller, Depends(web_caller)]) -> WebCaller:
    """Admin pages answer 404 to anyone else: a user learns nothing about them."""
    if not who.caller.is_admin:
        raise ApiError(404, "Not found")
    return who


async def checked_admin(who: Annotated[WebCaller, Depends(checked_caller)]) -> WebCaller:
    if not who.caller.is_admin:
        raise ApiError(404, "Not found")
    return who


Visitor = Annotated[WebCaller, Depends(web_caller)]
Poster = Annotated[WebCaller, Depends(checked_caller)]
AdminVisitor = Annotated[WebCaller, Depends(admin_caller)]
AdminPoster = Annotated[WebCaller, Depends(checked_admin)]
