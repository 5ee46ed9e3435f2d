"""Which connections a set of NetworkPolicies lets through, by the rules of networking.k8s.io/v1: a pod that
no policy of a direction selects is open in that direction; one that some policy selects takes only what one
of their rules allows; a connection between two pods needs the source's egress and the destination's
ingress. Enough of the API for the manifests here: matchLabels selectors, namespaceSelector, ipBlock with
except, numeric ports (TCP unless said). Pods are matched by selectors only (their addresses are the
cluster's, which ipBlock rules are not meant for)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str] = field(hash=False)
    namespace: str = "default"


@dataclass(frozen=True)
class Address:
    """Something outside the cluster's pods: the internet, a managed database, a metadata service."""
    name: str
    ip: str


Endpoint = Pod | Address


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert set(selector) <= {"matchLabels"}, f"matchExpressions are not modelled: {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict[str, Any], other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        if ip.version != net.version or ip not in net:
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])
                       if ipaddress.ip_network(e).version == ip.version)
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    return _matches(peer.get("podSelector"), other.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        assert isinstance(p.get("port", 0), int), f"named ports are not modelled: {p}"
        if p.get("protocol", "TCP") == "TCP" and ("port" not in p or p["port"] == port):
            return True
    return False


class Policies:
    def __init__(self, policies: list[dict[str, Any]]) -> None:
        self.policies = policies

    def _side_allows(self, pod: Pod, direction: str, other: Endpoint, port: int) -> bool:
        kind = "Ingress" if direction == "ingress" else "Egress"
        selecting = [p for p in self.policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                     and _matches(p["spec"]["podSelector"], pod.labels)]
        if not selecting:
            return True
        peers_key = "from" if direction == "ingress" else "to"
        for policy in selecting:
            for rule in policy["spec"].get(direction, []) or []:
                peers = rule.get(peers_key)
                reaches = not peers or any(_peer_matches(p, other) for p in peers)
                if reaches and _port_matches(rule.get("ports"), port):
                    return True
        return False

    def allows(self, source: Endpoint, destination: Endpoint, port: int) -> bool:
        """May `source` open a TCP connection to `destination`:`port`?"""
        out = not isinstance(source, Pod) or self._side_allows(source, "egress", destination, port)
        into = not isinstance(destination, Pod) or self._side_allows(destination, "ingress", source, port)
        return out and into
