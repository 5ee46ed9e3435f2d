"""The REST edge: the guide's endpoints over the auth, billing and generation gRPC services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from edge.access_log import AccessLogMiddleware
from edge.body_limit import BodyLimitMiddleware
from edge.clients import ServiceClients
from edge.errors import install_error_handlers
from edge.json import DecimalJSONResponse
from edge.key_cache import KeyCache, follow_revocations
from edge.metrics import metrics_endpoint
from edge.responses import ADMIN_ERRORS, ERRORS, KEY_ERRORS, METERED_ERRORS
from edge.routes import admin, bulk, generate, health, me, projects, purchases, reports
from edge.settings import EdgeSettings
from edge.web.app import install_web


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.clients = ServiceClients(settings)
        app.state.key_cache = KeyCache(settings.key_cache_seconds)
        app.state.settings = settings
        watcher = asyncio.create_task(follow_revocations(app.state.key_cache, app.state.clients.auth))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await app.state.clients.close()

    app = FastAPI(
        title="Film Script Generator API",
        version="0.1.0",
        default_response_class=DecimalJSONResponse,
        lifespan=lifespan,
        # A trailing slash is an unknown path (JSON 404), not a redirect: `/api/projects/..%2F` must not be
        # answered with a 307 to `/api/projects/..`.
        redirect_slashes=False,
        # FastAPI's native OpenTelemetry: nothing here collects spans, metrics or logs (Prometheus serves
        # /metrics), and with it on FastAPI checks for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       per_path={bulk.IMPORT_PATH: settings.max_import_bytes})
    # Always installed: it binds each request's id (EDGE_ACCESS_LOG only decides whether it writes the line).
    app.add_middleware(AccessLogMiddleware, log_requests=settings.access_log)
    # The metered generation routes first: every request is matched against the routes in order, and they
    # carry the traffic (no two routers share a path, so the order changes nothing else).
    app.include_router(generate.router, responses=METERED_ERRORS)
    app.include_router(generate.quotes, responses=KEY_ERRORS)
    app.include_router(projects.router, responses=KEY_ERRORS)
    app.include_router(me.router, responses=KEY_ERRORS)
    app.include_router(admin.router, responses=ADMIN_ERRORS)
    app.include_router(reports.mine, responses=KEY_ERRORS)
    app.include_router(reports.admin, responses=ADMIN_ERRORS)
    app.include_router(purchases.router, responses=KEY_ERRORS)
    app.include_router(purchases.webhooks, responses=ERRORS)
    app.include_router(bulk.router, responses=ADMIN_ERRORS)
    app.include_router(health.router, responses=ERRORS)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_web(app)
    return app
