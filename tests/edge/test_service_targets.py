"""A service address that names several replicas (`BILLING_ADDR=ipv4:a:p,b:p`) spreads the edge's calls
over all of them; a single address keeps gRPC's default (every call to it).

Two real gRPC servers on loopback count the calls that reach them; the edge's own `ServiceClients` makes
the channel, so this is the channel the edge runs with."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.grpc_target import balancing_options, names_several
from edge.clients import ServiceClients
from edge.settings import EdgeSettings

CALLS = 20


class Count(grpc.aio.ServerInterceptor):
    """Counts the calls that reach one server, under its name."""

    def __init__(self, seen: Counter[str], name: str) -> None:
        self.seen, self.name = seen, name

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.seen[self.name] += 1
        return await continuation(details)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[list[int], Counter[str]]]:
    """Two health-serving gRPC servers on free loopback ports, and the count of calls each received."""
    seen: Counter[str] = Counter()
    servers, ports = [], []
    for name in ("one", "two"):
        server = grpc.aio.server(interceptors=[Count(seen, name)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    try:
        yield ports, seen
    finally:
        for server in servers:
            await server.stop(None)


async def _check_many(billing_addr: str) -> None:
    settings = EdgeSettings(billing_addr=billing_addr, service_auth="off")  # type: ignore[call-arg]
    clients = ServiceClients(settings)
    try:
        stub: Any = clients.services["billing"].health
        for _ in range(CALLS):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await clients.close()


async def test_several_addresses_share_the_calls(replicas: tuple[list[int], Counter[str]]) -> None:
    ports, seen = replicas
    await _check_many(f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}")
    assert seen["one"] + seen["two"] == CALLS, seen
    # round_robin alternates over connected replicas: both get a fair share (pick_first would give one all).
    assert seen["one"] >= CALLS // 4 and seen["two"] >= CALLS // 4, seen


async def test_one_address_gets_every_call(replicas: tuple[list[int], Counter[str]]) -> None:
    ports, seen = replicas
    await _check_many(f"127.0.0.1:{ports[1]}")
    assert seen == Counter({"two": CALLS}), seen


def test_only_a_list_of_addresses_or_a_dns_name_changes_the_policy() -> None:
    # A dns: target may resolve to several addresses (a Kubernetes headless Service: one per pod).
    for several in ("ipv4:10.0.0.3:50062,10.0.0.4:50062", "dns:///billing.fsg.svc.cluster.local:50062"):
        assert names_several(several)
        assert balancing_options(several) == [("grpc.lb_policy_name", "round_robin")]
    for single in ("127.0.0.1:50062", "billing:50062", "ipv4:10.0.0.3:50062"):
        assert not names_several(single)
        assert balancing_options(single) == []
