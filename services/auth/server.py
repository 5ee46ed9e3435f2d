"""Runs the Auth gRPC server: `python -m services.auth.server` (or `fsg-auth serve`)."""

from __future__ import annotations

import logging

import grpc
import uvloop
from grpc_health.v1 import health

from common.db import create_pool, wait_for_schema
from common.grpc_server import create_server as create_grpc_server
from common.grpc_server import serve_until_signalled
from common.logging import setup_logging
from common.service_auth import ServiceTokens, tokens_or_exit
from common.tls import GrpcTls, tls_or_exit
from protos import auth_pb2, auth_pb2_grpc
from services.auth.repository import AuthRepository
from services.auth.revocations import RevocationHub
from services.auth.servicer import AuthServicer
from services.auth.sessions import SessionStore
from services.auth.settings import AuthSettings

log = logging.getLogger(__name__)
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["Auth"].full_name


def create_server(
    repository: AuthRepository, address: str, revocations: RevocationHub | None = None,
    *,
    tokens: ServiceTokens | None, tls: GrpcTls | None,
    sessions: SessionStore | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """The auth server, not yet started, and its bound port (tests bind port 0)."""
    servicer = AuthServicer(repository, revocations, sessions)
    return create_grpc_server(
        lambda server: auth_pb2_grpc.add_AuthServicer_to_server(servicer, server), [SERVICE_NAME], address,
        tokens=tokens, tls=tls,
    )


async def run(settings: AuthSettings) -> None:
    tokens = tokens_or_exit(settings)  # before anything else: no token, no start
    tls = tls_or_exit(settings, "auth")  # nor with half a TLS configuration
    pool = await create_pool(settings.dsn(), min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                             application_name="auth")
    await wait_for_schema(pool, settings.migrations_dir)
    revocations = RevocationHub(settings.dsn())
    repository = AuthRepository(pool)
    sessions = SessionStore(pool, repository, lifetime=settings.session_lifetime_seconds,
                            idle=settings.session_idle_seconds)
    server, port, health_servicer = create_server(repository, settings.address, revocations, tokens=tokens,
                                                  tls=tls, sessions=sessions)
    log.info("auth gRPC listening on %s:%d", settings.host, port)
    await serve_until_signalled(
        server, health_servicer, [SERVICE_NAME], pool, background=[revocations.run], draining=[revocations.close]
    )


def main() -> None:
    settings = AuthSettings()
    setup_logging("auth", settings.log_level, settings.log_format)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
