"""A service address setting (`BILLING_ADDR`, …) is a gRPC target: `host:port`, a DNS name, or several
replicas at once as `ipv4:10.0.0.3:50062,10.0.0.4:50062` (gRPC's own address-list syntax).

gRPC's default policy (pick_first) would send every call to the first address that answers, so a target
that names several addresses gets the round_robin policy: calls are spread over every replica that is
connected, and a replica whose connection fails is skipped until it reconnects.
"""

from __future__ import annotations

from typing import Any


def names_several(target: str) -> bool:
    """Whether `target` lists more than one address (`ipv4:a:p,b:p`, `ipv6:[a]:p,[b]:p`)."""
    return "," in target


def balancing_options(target: str) -> list[tuple[str, Any]]:
    """The channel options `target` needs: round_robin when it names several addresses, else none."""
    return [("grpc.lb_policy_name", "round_robin")] if names_several(target) else []
