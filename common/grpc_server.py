"""The shape every gRPC service shares: a grpc.aio server that listens with mutual TLS when the deployment
has certificates (`common.tls`), demands the service token (`common.service_auth`) and maps domain errors,
the stock health servicer and reflection, a database watchdog that flips health to NOT_SERVING while PostgreSQL
is unreachable, and a graceful stop on SIGTERM/SIGINT (health goes NOT_SERVING first, then in-flight
calls get `grace` seconds to finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.errors import DomainErrorInterceptor
from common.grpc_target import SERVER_KEEPALIVE_OPTIONS
from common.logging import get_logger
from common.request_id import RequestIdInterceptor
from common.service_auth import ServiceTokenInterceptor, ServiceTokens
from common.tls import GrpcTls

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: Large enough for a whole project document (scenes and dialogue) in one message.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def create_server(
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    address: str,
    *,
    tokens: ServiceTokens | None,
    tls: GrpcTls | None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build (not start) a server with our servicers, health and reflection; returns the bound port.

    `tokens` and `tls` are required (None only when FSG_SERVICE_AUTH=off, and when no FSG_TLS_* is set) so
    no server is built without deciding. With `tls`, the port speaks only mutual TLS: a client without a
    certificate signed by the deployment's CA fails the handshake, before any method (health included).
    """
    interceptors: list[grpc.aio.ServerInterceptor] = [RequestIdInterceptor(), DomainErrorInterceptor()]
    if tokens is not None:
        interceptors.insert(0, ServiceTokenInterceptor(tokens))  # first: refuse before any other work
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            *SERVER_KEEPALIVE_OPTIONS,  # our channels ping every few seconds (common/grpc_target.py)
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.server_credentials())
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return server, port, health_servicer


async def set_health(health_servicer: health.aio.HealthServicer, names: Sequence[str], status: int) -> None:
    """Set the overall ("") and every named service's status."""
    for name in ("", *names):
        await health_servicer.set(name, status)


async def watch_database(
    pool: asyncpg.Pool,
    health_servicer: health.aio.HealthServicer,
    names: Sequence[str],
    interval: float = 2.0,
) -> None:
    """Report NOT_SERVING while the database does not answer, SERVING again once it does."""
    current: int | None = None
    while True:
        try:
            async with asyncio.timeout(interval):
                await pool.fetchval("SELECT 1")
            status = SERVING
        except Exception:  # any failure to answer means not ready
            status = NOT_SERVING
        if status != current:
            if status == NOT_SERVING:
                get_logger(__name__).warning("db.connection_problem", where="health",
                                             message="database unreachable: health NOT_SERVING")
            await set_health(health_servicer, names, status)
            current = status
        await asyncio.sleep(interval)


async def serve_until_signalled(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    names: Sequence[str],
    pool: asyncpg.Pool,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    grace: float = 5.0,
    draining: Sequence[Callable[[], None]] = (),
) -> None:
    """Start, serve until SIGTERM/SIGINT, then drain: NOT_SERVING, end long-lived streams (`draining`),
    stop(grace), cancel background work."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await set_health(health_servicer, names, SERVING)
    tasks = [asyncio.create_task(watch_database(pool, health_servicer, names))]
    tasks += [asyncio.create_task(job()) for job in background]
    await stop.wait()
    log.info("stopping: draining for up to %.1fs", grace)
    await set_health(health_servicer, names, NOT_SERVING)
    for hook in draining:
        hook()
    await server.stop(grace)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await pool.close()
