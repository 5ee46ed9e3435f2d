"""Liveness (`/healthz`: the edge answers) and readiness (`/readyz`: every service SERVING, which each
service only reports while its database answers)."""

from __future__ import annotations

from fastapi import APIRouter

from edge import responses
from edge.deps import Clients, Keys
from edge.json import DecimalJSONResponse
from edge.request_json import JsonRoute

router = APIRouter(tags=["health"], route_class=JsonRoute)


@router.get("/healthz", response_model=responses.Liveness)
async def healthz() -> DecimalJSONResponse:
    return DecimalJSONResponse({"status": "ok"})


@router.get("/readyz", response_model=responses.Readiness,
            responses={503: {"model": responses.Readiness, "description": "Some service is not serving"}})
async def readyz(clients: Clients, cache: Keys) -> DecimalJSONResponse:
    services = await clients.health()
    ready = all(status == "SERVING" for status in services.values())
    key_cache = "live" if cache.enabled else ("off" if cache.ttl <= 0 else "bypassed")
    return DecimalJSONResponse(
        {"status": "ready" if ready else "not ready", "services": services, "key_cache": key_cache},
        status_code=200 if ready else 503,
    )
