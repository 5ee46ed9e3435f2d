"""Runs the Generation gRPC server: `python -m services.generation.server` (or `fsg-generation serve`)."""

from __future__ import annotations

import asyncio
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
from protos import generation_pb2, generation_pb2_grpc
from services.generation.claude import ClaudeClient
from services.generation.planner import Planner
from services.generation.pricing import PriceTable
from services.generation.repository import ProjectRepository
from services.generation.servicer import GenerationServicer
from services.generation.settings import GenerationSettings
from services.generation.templates import TemplateStore

log = logging.getLogger(__name__)
SERVICE_NAME = generation_pb2.DESCRIPTOR.services_by_name["Generation"].full_name


def create_server(
    servicer: GenerationServicer, address: str, *, tokens: ServiceTokens | None, tls: GrpcTls | None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    return create_grpc_server(
        lambda server: generation_pb2_grpc.add_GenerationServicer_to_server(servicer, server), [SERVICE_NAME], address,
        tokens=tokens, tls=tls,
    )


async def run(settings: GenerationSettings) -> None:
    tokens = tokens_or_exit(settings)  # before anything else: no token, no start
    tls = tls_or_exit(settings, "generation")  # nor with half a TLS configuration
    if settings.anthropic_api_key is None:
        raise SystemExit("ANTHROPIC_API_KEY is not set (`make run` starts the local simulator when it is unset)")
    pool = await create_pool(settings.dsn(), min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                             application_name="generation")
    await wait_for_schema(pool, settings.migrations_dir)
    claude = ClaudeClient(
        api_key=settings.anthropic_api_key.get_secret_value(), base_url=settings.anthropic_base_url,
        policy=settings.retry_policy,
    )
    projects = ProjectRepository(pool)
    planner = Planner(PriceTable.load(), TemplateStore(), projects, settings.max_tokens_cap)
    servicer = GenerationServicer(planner, claude, simulated=settings.simulated,
                                  fault_injection=settings.fault_injection)
    server, port, health_servicer = create_server(servicer, settings.address, tokens=tokens, tls=tls)
    if settings.simulated:
        log.warning("*** SIMULATED CLAUDE: calls go to the local simulator at %s ***", settings.anthropic_base_url)
    log.info("generation gRPC listening on %s:%d", settings.host, port)
    try:
        await serve_until_signalled(
            server, health_servicer, [SERVICE_NAME], pool,
            background=[lambda: discard_unpaid_forever(projects, settings.cleanup_interval_seconds)],
        )
    finally:
        await claude.close()


async def discard_unpaid_forever(projects: ProjectRepository, interval: float) -> None:
    """Delete what voided or expired holds staged (never part of a project, so only storage), periodically."""
    while True:
        try:
            deleted = await projects.discard_unpaid()
            if deleted:
                log.info("discarded %d unpaid staged results", deleted)
        except Exception as exc:  # the database may be away; try again next round
            log.warning("discarding unpaid results failed: %s", type(exc).__name__)
        await asyncio.sleep(interval)


def main() -> None:
    settings = GenerationSettings()
    setup_logging("generation", settings.log_level, settings.log_format)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
