"""How our channels reach a service: load balancing over its replicas and noticing a dead connection.

A service address setting (`BILLING_ADDR`, …) is a gRPC target: `host:port`, a DNS name, several replicas at
once as `ipv4:10.0.0.3:50062,10.0.0.4:50062` (gRPC's own address-list syntax), or `dns:///name:port`, whose
name may resolve to several (a Kubernetes headless Service). gRPC's default policy (pick_first) would send
every call to the first address that answers, so such targets get round_robin: calls are spread over every
replica that is connected, and a replica whose connection fails is skipped until it reconnects.

"Fails" needs noticing. A cut cable or a dead host sends no reset, so without pings a connection looks alive
until the OS gives up on it (minutes), and round_robin keeps giving it its turn; every call there waits out
its deadline. Channels ping every `KEEPALIVE_TIME_MS` and drop a connection whose ping is not answered in
`KEEPALIVE_TIMEOUT_MS`, idle or not; servers allow pings that often (`SERVER_KEEPALIVE_OPTIONS`, else they
answer a client pinging "too often" with GOAWAY). The cost is one 8-byte frame each way per connection
every few seconds. tests/multihost measures what it changes when one edge's link to a billing replica is cut.
"""

from __future__ import annotations

from typing import Any

#: A channel pings its connection this often (idle or not) …
KEEPALIVE_TIME_MS = 5_000
#: … and drops it when a ping goes unanswered this long: a silent cut is noticed within about 7 s.
KEEPALIVE_TIMEOUT_MS = 2_000

KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
#: What a server needs to accept those pings: pings without calls, no more often than a little under the
#: clients' interval (a ping that arrives early counts as a strike; two strikes and the server hangs up).
SERVER_KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS - 1_000),
    ("grpc.http2.max_ping_strikes", 2),
]


def names_several(target: str) -> bool:
    """Whether `target` may stand for more than one address: a list (`ipv4:a:p,b:p`, `ipv6:[a]:p,[b]:p`) or a
    `dns:` name, which resolves to every address the name has."""
    return "," in target or target.startswith("dns:")


def balancing_options(target: str) -> list[tuple[str, Any]]:
    """The channel options `target` needs: round_robin when it may name several addresses, else none."""
    return [("grpc.lb_policy_name", "round_robin")] if names_several(target) else []


def channel_options(target: str, extra: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Every channel's options: keepalive, the balancing `target` needs, then the caller's `extra` (which win,
    being later)."""
    return [*KEEPALIVE_OPTIONS, *balancing_options(target), *extra]
