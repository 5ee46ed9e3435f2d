"""The admin console: users (search, keyset pages, create), a user's page (balance, usage, ledger, grant,
rotate key, disable or enable, rate limits) and the system's totals. Admins only; anyone else gets 404.
Every read and action is the admin REST route's own function (edge/routes/admin.py, reports.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from edge.deps import Clients, Keys
from edge.errors import ApiError
from edge.routes import admin, reports
from edge.schemas import CreateUserBody, GrantCreditsBody, LimitsBody, UsernamePath
from edge.web.common_forms import number, validated
from edge.web.pages import data, day_chart, problem, render
from edge.web.session import AdminPoster, AdminVisitor, WebCaller
from protos import auth_pb2

router = APIRouter(prefix="/app/admin", include_in_schema=False)
PAGE = 25
DAYS = reports.DEFAULT_DAYS


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


async def _users_page(request: Request, clients: Clients, who: WebCaller, *, q: str = "", after: int = 0,
                      status: int = 200, created: dict[str, Any] | None = None,
                      error: ApiError | None = None) -> Response:
    page = data(await admin.list_users(clients, who.caller, limit=PAGE, after=after, search=q))
    return render(request, "admin_users.html", who, status=status, users=page["users"], next_after=page["next_after"],
                  q=q, after=after, created=created, problem=problem(error) if error else None)


@router.get("")
async def users(request: Request, clients: Clients, who: AdminVisitor,
                q: Annotated[str, Query(max_length=254)] = "", after: Annotated[int, Query(ge=0)] = 0) -> Response:
    return await _users_page(request, clients, who, q=q, after=after)


@router.post("/users")
async def create_user(request: Request, clients: Clients, who: AdminPoster) -> Response:
    """The new user's key is on this answer only."""
    form = await _form(request)
    try:
        credits = form.get("initial_credits", "").strip()
        body = validated(CreateUserBody, {"username": form.get("username", ""), "email": form.get("email", ""),
                                          "initialCredits": number(credits, "initialCredits") if credits else 0})
        created = data(await admin.create_user(body, clients, who.caller))
    except ApiError as exc:
        return await _users_page(request, clients, who, status=exc.status, error=exc)
    return await _users_page(request, clients, who, created=created["user"])


async def _user_page(request: Request, clients: Clients, who: WebCaller, username: str, *, status: int = 200,
                     notice: str | None = None, new_key: str | None = None,
                     error: ApiError | None = None) -> Response:
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=username))
    stats = data(await admin.usage_stats(username, clients, who.caller))
    report = data(await reports.user_usage_report(username, clients, who.caller, days=DAYS))
    calls = data(await reports.user_calls(username, clients, who.caller, limit=20, before=0, failed=False))
    ledger = data(await reports.user_transactions(username, clients, who.caller, limit=20, before=0))
    limits = data(await admin.get_limits(username, clients, who.caller))
    return render(request, "admin_user.html", who, status=status, account=user, stats=stats, report=report,
                  calls=calls["calls"], ledger=ledger["transactions"], limits=limits, notice=notice,
                  new_key=new_key, problem=problem(error) if error else None, idem=uuid.uuid4().hex)


@router.get("/users/{username}")
async def user(request: Request, username: UsernamePath, clients: Clients, who: AdminVisitor) -> Response:
    return await _user_page(request, clients, who, username)


@router.post("/users/{username}/grant")
async def grant(request: Request, username: UsernamePath, clients: Clients, who: AdminPoster) -> Response:
    """The form carries an idempotency key made when it was rendered: submitting it twice grants once."""
    form = await _form(request)
    try:
        amount = form.get("credits", "").strip()
        body = validated(GrantCreditsBody, {"username": username, "credits": number(amount, "credits") if amount else 0,
                                            "notes": form.get("notes", "")})
        granted = data(await admin.grant_credits(body, clients, who.caller,
                                                 idempotency_key=form.get("idem") or None))
    except ApiError as exc:
        return await _user_page(request, clients, who, username, status=exc.status, error=exc)
    said = "already granted by this form" if granted["replayed"] else "granted"
    return await _user_page(request, clients, who, username,
                            notice=f"{granted['credits_granted']} credits {said}.")


@router.post("/users/{username}/rotate-key")
async def rotate(request: Request, username: UsernamePath, clients: Clients, cache: Keys,
                 who: AdminPoster) -> Response:
    try:
        rotated = data(await admin.rotate_key(username, clients, cache, who.caller))
    except ApiError as exc:
        return await _user_page(request, clients, who, username, status=exc.status, error=exc)
    return await _user_page(request, clients, who, username, new_key=rotated["api_key"],
                            notice="Key rotated: the old key and its sessions stopped working.")


@router.post("/users/{username}/disable")
async def disable(request: Request, username: UsernamePath, clients: Clients, cache: Keys,
                  who: AdminPoster) -> Response:
    try:
        await admin.disable_user(username, clients, cache, who.caller)
    except ApiError as exc:
        return await _user_page(request, clients, who, username, status=exc.status, error=exc)
    return await _user_page(request, clients, who, username, notice="User disabled.")


@router.post("/users/{username}/enable")
async def enable(request: Request, username: UsernamePath, clients: Clients, who: AdminPoster) -> Response:
    await admin.enable_user(username, clients, who.caller)
    return await _user_page(request, clients, who, username, notice="User enabled.")


@router.post("/users/{username}/limits")
async def limits(request: Request, username: UsernamePath, clients: Clients, who: AdminPoster) -> Response:
    """Blank = the service default; 0 = no limit."""
    form = await _form(request)
    try:
        values = {name: number(form[name].strip(), name) if form.get(name, "").strip() else None
                  for name in ("requests_per_minute", "max_concurrent")}
        body = validated(LimitsBody, values)
        await admin.set_limits(username, body, clients, who.caller)
    except ApiError as exc:
        return await _user_page(request, clients, who, username, status=exc.status, error=exc)
    return await _user_page(request, clients, who, username, notice="Rate limits saved.")


@router.get("/system")
async def system(request: Request, clients: Clients, who: AdminVisitor) -> Response:
    report = data(await reports.system_usage_report(clients, who.caller, days=DAYS))
    failed = data(await reports.system_calls(clients, who.caller, limit=20, before=0, failed=True))
    return render(request, "admin_system.html", who, report=report, failed=failed["calls"], days=DAYS,
                  chart_json=day_chart(report))
