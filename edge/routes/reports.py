"""Usage reports: spend per day, by endpoint and by model, and the recent calls, for a user's own account
(`/api/my-…`) and for the whole system (`/api/admin/…`, with the top spenders). The web dashboards read
these same functions; billing computes every number (services/billing/reports.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from common.money import from_wire
from edge import responses
from edge.clients import ServiceClients
from edge.deps import Clients
from edge.json import DecimalJSONResponse
from edge.request_json import JsonRoute
from edge.routes.me import transactions_body
from edge.schemas import Cursor, UsernamePath
from edge.security import Admin, User
from protos import auth_pb2, billing_pb2

mine = APIRouter(prefix="/api", tags=["self-service"], route_class=JsonRoute)
admin = APIRouter(prefix="/api/admin", tags=["admin"], route_class=JsonRoute)

Days = Annotated[int, Query(ge=1, le=366, description="the window, ending today (UTC)")]
#: The window a report covers unless asked otherwise (the web pages use it too).
DEFAULT_DAYS = 30
Limit = Annotated[int, Query(ge=1, le=200)]
FailedOnly = Annotated[bool, Query(description="failed calls only")]
#: How many top spenders the system report names.
TOP_USERS = 10


def _group(g: billing_pb2.UsageGroup) -> dict[str, Any]:
    return {"name": g.name, "requests": g.requests, "failed": g.failed, "tokens": g.tokens,
            "credits": from_wire(g.credits)}


async def report_body(clients: ServiceClients, user_id: int, days: int, top_users: int = 0) -> dict[str, Any]:
    """One user's report (user_id > 0) or everyone's (0, with the top spenders by name)."""
    reply = await clients.call("billing", clients.billing.UsageReport,
                               billing_pb2.UsageReportRequest(user_id=user_id, days=days, top_users=top_users))
    body: dict[str, Any] = {
        "days": days,
        "perDay": [_group(g) for g in reply.days],
        "byEndpoint": [_group(g) for g in reply.by_endpoint],
        "byModel": [_group(g) for g in reply.by_model],
    }
    if not user_id:
        names = await _usernames(clients, [g.user_id for g in reply.top_users])
        body["topUsers"] = [{"userId": g.user_id, "username": names.get(g.user_id), "requests": g.requests,
                             "failed": g.failed, "tokens": g.tokens, "credits": from_wire(g.credits)}
                            for g in reply.top_users]
    return body


async def _usernames(clients: ServiceClients, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    found = await clients.call("auth", clients.auth.FindUsers, auth_pb2.FindUsersRequest(ids=ids))
    return {u.id: u.username for u in found.users}


async def calls_body(clients: ServiceClients, user_id: int, *, failed: bool, limit: int, before: int
                     ) -> dict[str, Any]:
    """A page of calls, newest first: one user's (user_id > 0) or everyone's (0)."""
    reply = await clients.call("billing", clients.billing.RecentCalls, billing_pb2.RecentCallsRequest(
        user_id=user_id, failed_only=failed, page_size=limit, before_id=before))
    return {
        "calls": [{
            "id": r.id, "userId": r.user_id, "created_at": r.created_at, "requestId": r.request_id,
            "endpoint": r.endpoint, "model": r.model or None, "projectPath": r.project_path or None,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "credits_cost": from_wire(r.credits_cost), "success": r.success,
            "error_message": r.error_message or None,
            "latency_ms": r.latency_ms if r.HasField("latency_ms") else None,
        } for r in reply.rows],
        "next_before": reply.next_before_id or None,
    }


@mine.get("/my-usage-report", response_model=responses.UsageReport)
async def my_usage_report(clients: Clients, caller: User, days: Days = DEFAULT_DAYS) -> DecimalJSONResponse:
    """The caller's usage per day (every day of the window), by endpoint and by model."""
    return DecimalJSONResponse(await report_body(clients, caller.id, days))


@mine.get("/my-calls", response_model=responses.CallPage)
async def my_calls(clients: Clients, caller: User, limit: Limit = 50, before: Cursor = 0,
                   failed: FailedOnly = False) -> DecimalJSONResponse:
    """The caller's calls newest first, each with its request id, tokens, cost and error."""
    return DecimalJSONResponse(await calls_body(clients, caller.id, failed=failed, limit=limit, before=before))


@admin.get("/usage-report", response_model=responses.SystemReport)
async def system_usage_report(clients: Clients, caller: Admin, days: Days = DEFAULT_DAYS) -> DecimalJSONResponse:
    """Everyone's usage per day (requests, tokens, credits charged, failed calls), by endpoint, by model,
    and the top spenders of the window."""
    return DecimalJSONResponse(await report_body(clients, 0, days, TOP_USERS))


@admin.get("/calls", response_model=responses.CallPage)
async def system_calls(clients: Clients, caller: Admin, limit: Limit = 50, before: Cursor = 0,
                       failed: FailedOnly = False) -> DecimalJSONResponse:
    """Everyone's calls newest first; `failed=true` for the failed ones with their errors."""
    return DecimalJSONResponse(await calls_body(clients, 0, failed=failed, limit=limit, before=before))


async def _user_id(clients: ServiceClients, username: str) -> int:
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=username))
    return int(user.id)


@admin.get("/users/{username}/usage-report", response_model=responses.UsageReport)
async def user_usage_report(username: UsernamePath, clients: Clients, caller: Admin,
                            days: Days = DEFAULT_DAYS) -> DecimalJSONResponse:
    """A user's usage per day, by endpoint and by model (what they see on their own dashboard)."""
    return DecimalJSONResponse(await report_body(clients, await _user_id(clients, username), days))


@admin.get("/users/{username}/calls", response_model=responses.CallPage)
async def user_calls(username: UsernamePath, clients: Clients, caller: Admin, limit: Limit = 50,
                     before: Cursor = 0, failed: FailedOnly = False) -> DecimalJSONResponse:
    return DecimalJSONResponse(await calls_body(clients, await _user_id(clients, username), failed=failed,
                                                limit=limit, before=before))


@admin.get("/users/{username}/transactions", response_model=responses.TransactionPage)
async def user_transactions(username: UsernamePath, clients: Clients, caller: Admin,
                            limit: Annotated[int, Query(ge=1, le=500)] = 50,
                            before: Cursor = 0) -> DecimalJSONResponse:
    """A user's ledger, newest first, as GET /api/my-transactions shows it to them."""
    return DecimalJSONResponse(await transactions_body(clients, await _user_id(clients, username), limit, before))
