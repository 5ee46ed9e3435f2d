"""Admin endpoints: create users, grant credits, read usage, manage keys. Admin key required."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query

from common.money import from_wire, to_wire
from edge import responses
from edge.deps import Clients, IdempotencyKeyHeader, Keys
from edge.errors import ApiError
from edge.json import DecimalJSONResponse
from edge.rate_limits import limits_body
from edge.request_json import JsonRoute
from edge.routes.stats import credits_owed, usage_stats_body
from edge.schemas import CreateUserBody, Cursor, GrantCreditsBody, LimitsBody, UsernamePath
from edge.security import Admin
from protos import auth_pb2, billing_pb2

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=JsonRoute)
R = TypeVar("R")


#: How long create-user and grant-credits retry an idempotent billing call through an outage.
BILLING_RETRY_SECONDS = 3.0


def _balance_numbers(balance: billing_pb2.Balance) -> dict[str, Any]:
    return {
        "credits_remaining": None if balance.unlimited else from_wire(balance.available),
        "credits_held": from_wire(balance.held),
        "credits_owed": credits_owed(balance),
        "total_credits_purchased": from_wire(balance.total_credits_purchased),
        "unlimited": balance.unlimited,
    }


@router.post("/create-user", status_code=201, response_model=responses.CreatedUser)
async def create_user(body: CreateUserBody, clients: Clients, admin: Admin) -> DecimalJSONResponse:
    created = await clients.call(
        "auth", clients.auth.CreateUser, auth_pb2.CreateUserRequest(username=body.username, email=body.email)
    )
    user = created.user
    try:
        if body.initial_credits > 0:
            grant = billing_pb2.GrantRequest(
                user_id=user.id, credits=to_wire(Decimal(body.initial_credits)), transaction_type="grant",
                notes="initial credits", created_by=admin.username,
                idempotency_key="initial", idempotency_scope=f"create-user:{user.id}",
            )
            reply = await clients.call_idempotent("billing", clients.billing.Grant, grant,
                                                  retry_for=BILLING_RETRY_SECONDS)
            balance = reply.balance
        else:
            opened = billing_pb2.OpenAccountRequest(user_id=user.id)
            balance = await clients.call_idempotent("billing", clients.billing.OpenAccount, opened,
                                                    retry_for=BILLING_RETRY_SECONDS)
    except ApiError as exc:
        # The user exists and its key is shown only now, so answer with it and say what is pending.
        raise ApiError(
            503, "Credits not granted",
            "The user was created but billing is unavailable: grant the initial credits with "
            "/api/admin/grant-credits when it is back",
            user={"id": user.id, "username": user.username, "email": user.email, "api_key": created.api_key,
                  "credits_remaining": 0},
        ) from exc
    return DecimalJSONResponse(
        {
            "message": "User created successfully",
            "user": {
                "id": user.id,
                "username": user.username,
                "email": user.email,
                "api_key": created.api_key,
                "credits_remaining": from_wire(balance.available),
            },
        },
        status_code=201,
    )


@router.post("/grant-credits", response_model=responses.Granted)
async def grant_credits(
    body: GrantCreditsBody,
    clients: Clients,
    admin: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> DecimalJSONResponse:
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=body.username))
    # A client's key is scoped to the admin who sends it, so reusing it for another user (or amount, type,
    # notes) is caught as a different request rather than granting twice.
    grant = billing_pb2.GrantRequest(
        user_id=user.id, credits=to_wire(Decimal(body.credits)), transaction_type=body.type, notes=body.notes,
        created_by=admin.username, idempotency_key=idempotency_key or uuid.uuid4().hex,
        idempotency_scope=f"grant:{admin.id}",
    )
    reply = await clients.call_idempotent("billing", clients.billing.Grant, grant, retry_for=BILLING_RETRY_SECONDS)
    return DecimalJSONResponse(
        {
            "message": "Credits granted successfully",
            "user": {"username": user.username, **_balance_numbers(reply.balance)},
            "credits_granted": body.credits,
            "transaction_id": reply.transaction_id,
            "replayed": reply.replayed,
        }
    )


@router.get("/usage-stats/{username}", response_model=responses.UsageStats)
async def usage_stats(username: UsernamePath, clients: Clients, admin: Admin) -> DecimalJSONResponse:
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=username))
    return DecimalJSONResponse(await usage_stats_body(clients, user.id, user.username))


@router.get("/users", response_model=responses.UserPage)
async def list_users(
    clients: Clients,
    admin: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Cursor = 0,
    search: Annotated[str, Query(max_length=254, description="a prefix of the username or email")] = "",
) -> DecimalJSONResponse:
    page = await clients.call(
        "auth", clients.auth.ListUsers, auth_pb2.ListUsersRequest(page_size=limit, after_id=after, search=search)
    )
    ids = [u.id for u in page.users]
    totals = await clients.call("billing", clients.billing.UsageTotals, billing_pb2.UsageTotalsRequest(user_ids=ids))
    by_id = {t.balance.user_id: t for t in totals.totals}
    users = []
    for u in page.users:
        t = by_id.get(u.id)
        users.append(
            {
                "id": u.id, "username": u.username, "email": u.email, "is_admin": u.is_admin,
                "disabled": u.disabled, "api_key_prefix": u.key_prefix, "created_at": u.created_at,
                **(_balance_numbers(t.balance) if t else _balance_numbers(billing_pb2.Balance())),
                "total_requests": t.total_requests if t else 0,
                "total_tokens": t.total_tokens if t else 0,
                "total_cost": from_wire(t.total_cost) if t else from_wire(""),
            }
        )
    return DecimalJSONResponse({"users": users, "next_after": page.next_after_id or None})


@router.post("/users/{username}/rotate-key", response_model=responses.RotatedKey)
async def rotate_key(username: UsernamePath, clients: Clients, cache: Keys, admin: Admin) -> DecimalJSONResponse:
    """A new key for the user, shown once; the old key stops working at once. Refused (409) for the last
    enabled admin, whose only copy of the new key would be this answer: `fsg-auth rotate-admin-key` on the
    host does that."""
    reply = await clients.call("auth", clients.auth.RotateKey, auth_pb2.GetUserRequest(username=username))
    # Auth's revocation push will evict too; evicting here as well means this edge refuses the old key
    # even on the very next request, before that push has arrived.
    cache.evict_user(reply.user.id)
    return DecimalJSONResponse({"message": "API key rotated", "username": reply.user.username,
                                "api_key": reply.api_key})


@router.post("/users/{username}/disable", response_model=responses.UserState)
async def disable_user(username: UsernamePath, clients: Clients, cache: Keys, admin: Admin) -> DecimalJSONResponse:
    """Refused (409) for the last enabled admin: nobody could use the API afterwards."""
    user = await clients.call("auth", clients.auth.DisableUser, auth_pb2.GetUserRequest(username=username))
    cache.evict_user(user.id)
    return DecimalJSONResponse({"message": "User disabled", "username": user.username, "disabled": True})


@router.post("/users/{username}/enable", response_model=responses.UserState)
async def enable_user(username: UsernamePath, clients: Clients, admin: Admin) -> DecimalJSONResponse:
    user = await clients.call("auth", clients.auth.EnableUser, auth_pb2.GetUserRequest(username=username))
    return DecimalJSONResponse({"message": "User enabled", "username": user.username, "disabled": False})


@router.get("/users/{username}/limits", response_model=responses.Limits)
async def get_limits(username: UsernamePath, clients: Clients, admin: Admin) -> DecimalJSONResponse:
    """The user's rate limits: stored (null = the service default) and effective (0 = no limit)."""
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=username))
    limits = await clients.call("billing", clients.billing.GetLimits, billing_pb2.UserRef(user_id=user.id))
    return DecimalJSONResponse({"username": user.username, **limits_body(limits)})


def _limit_value(body: LimitsBody, name: str) -> billing_pb2.LimitValue | None:
    """A field left out of the body → None (keep); null → the default; a number → that limit."""
    if name not in body.model_fields_set:
        return None
    value = getattr(body, name)
    return billing_pb2.LimitValue(use_default=True) if value is None else billing_pb2.LimitValue(limit=value)


@router.put("/users/{username}/limits", response_model=responses.Limits)
async def set_limits(username: UsernamePath, body: LimitsBody, clients: Clients, admin: Admin) -> DecimalJSONResponse:
    """Set the user's rate limits (absent = keep, null = the service default, 0 = no limit).

    Takes effect on the user's next call on every replica: billing reads the limits in the same locked
    statement that places each hold.
    """
    user = await clients.call("auth", clients.auth.GetUser, auth_pb2.GetUserRequest(username=username))
    update = billing_pb2.SetLimitsRequest(
        user_id=user.id,
        requests_per_minute=_limit_value(body, "requests_per_minute"),
        max_concurrent=_limit_value(body, "max_concurrent"),
    )
    limits = await clients.call_idempotent("billing", clients.billing.SetLimits, update,
                                           retry_for=BILLING_RETRY_SECONDS)
    return DecimalJSONResponse({"message": "Limits updated", "username": user.username, **limits_body(limits)})
