"""Liveness (`/healthz`: the edge answers) and readiness (`/readyz`: every service SERVING, which each
service only reports while its database answers)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from edge.json import DecimalJSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> DecimalJSONResponse:
    return DecimalJSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> DecimalJSONResponse:
    services = await request.app.state.clients.health()
    ready = all(status == "SERVING" for status in services.values())
    cache = request.app.state.key_cache
    key_cache = "live" if cache.enabled else ("off" if cache.ttl <= 0 else "bypassed")
    return DecimalJSONResponse(
        {"status": "ready" if ready else "not ready", "services": services, "key_cache": key_cache},
        status_code=200 if ready else 503,
    )
