"""The NetworkPolicies let through exactly the connections the code makes, and no other.

Who calls whom is read from the settings classes, not written here: a process calls service X when it is
given X_ADDR (the edge: AUTH_ADDR, BILLING_ADDR, GENERATION_ADDR; billing: AUTH_ADDR), and reaches the
database when it needs DATABASE_URL. Every ordered pair of endpoints (each workload's pods, the database, an
internet address, a private address, the cloud metadata address) on every port in play is tried."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.deploy.manifests import OVERLAYS, container_env, process_of, required, workloads
from tests.deploy.netpol import Address, Endpoint, Pod, Policies

INTERNET = Address("internet", "203.0.113.10")  # TEST-NET-3: a public address
PRIVATE = Address("private", "10.250.250.250")  # another machine on a private network
METADATA = Address("metadata", "169.254.169.254")  # the cloud metadata service
#: Outbound calls to the internet, which no setting names: Stripe, SMTP and users' webhooks (any port) from
#: billing; Anthropic's API (HTTPS) from generation.
INTERNET_CALLS = {"billing": None, "generation": {443}}
POSTGRES = 5432


def _endpoints(objects: list[dict[str, Any]]) -> tuple[dict[str, Endpoint], dict[str, int], dict[str, set[str]]]:
    """Endpoints by name, each service's port, and the *_ADDR / DATABASE_URL each process is given."""
    endpoints: dict[str, Endpoint] = {}
    ports: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    namespace = next(o["metadata"].get("namespace", "default") for o in objects)
    for obj, template in workloads(objects):
        labels = template["metadata"]["labels"]
        name = labels["app.kubernetes.io/component"]
        endpoints[name] = Pod(name, labels, namespace)
        (container,) = template["spec"]["containers"]
        for port in container.get("ports", []):
            ports[name] = port["containerPort"]
        if name == "database":
            continue
        process, cls = process_of(container["command"])
        assert process == name, obj["metadata"]["name"]
        env = container_env(container)
        calls[name] = {n[: -len("_ADDR")].lower() for n in env if n.endswith("_ADDR")}
        if "DATABASE_URL" in required(cls):
            calls[name].add("database")
    if "database" not in endpoints:  # an external database: the private network the policies name on its port
        blocks = {peer["ipBlock"]["cidr"] for p in objects if p["kind"] == "NetworkPolicy"
                  for rule in p["spec"].get("egress", []) for peer in rule.get("to", [])
                  if "ipBlock" in peer and ipaddress.ip_network(peer["ipBlock"]["cidr"]).is_private
                  and ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen > 0}
        assert len(blocks) == 1, f"no single database network in the policies: {blocks}"
        endpoints["database"] = Address("database", str(next(ipaddress.ip_network(blocks.pop()).hosts())))
    ports["database"] = POSTGRES
    return endpoints, ports, calls


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_the_connections_the_code_makes_are_allowed(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objects = rendered[overlay]
    policies = Policies([o for o in objects if o["kind"] == "NetworkPolicy"])
    endpoints, ports, calls = _endpoints(objects)
    assert calls["edge"] == {"auth", "billing", "generation"} and "auth" in calls["billing"]  # read, not assumed
    outside = {INTERNET.name: INTERNET, PRIVATE.name: PRIVATE, METADATA.name: METADATA}
    everyone = {**endpoints, **outside}
    tried = sorted({*ports.values(), 443, 587, 8443})
    wrong = []
    for src_name, src in everyone.items():
        for dst_name, dst in everyone.items():
            if src_name == dst_name or (isinstance(src, Address) and isinstance(dst, Address)):
                continue
            for port in tried:
                expected = (
                    (dst_name in calls.get(src_name, set()) and port == ports[dst_name])
                    or (isinstance(src, Address) and dst_name == "edge" and port == ports["edge"])  # from outside
                    or (dst_name == "internet" and src_name in INTERNET_CALLS
                        and (INTERNET_CALLS[src_name] is None or port in INTERNET_CALLS[src_name]))
                )
                if policies.allows(src, dst, port) != expected:
                    wrong.append(f"{src_name} → {dst_name}:{port} {'refused' if expected else 'allowed'}")
    assert not wrong, f"{overlay}:\n" + "\n".join(wrong)


def test_the_model_of_the_rules_refuses_and_allows() -> None:
    """The evaluator itself: default deny, a selector, an ipBlock with except, and both sides of a pod pair."""
    a = Pod("a", {"c": "a"})
    b = Pod("b", {"c": "b"})
    deny = {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    policies = Policies([deny])
    assert not policies.allows(a, b, 80)
    a_out = {"spec": {"podSelector": {"matchLabels": {"c": "a"}}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"podSelector": {"matchLabels": {"c": "b"}}}], "ports": [{"port": 80}]},
                                 {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}}
    assert not Policies([deny, a_out]).allows(a, b, 80)  # b's ingress still refuses
    b_in = {"spec": {"podSelector": {"matchLabels": {"c": "b"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"c": "a"}}}]}]}}
    both = Policies([deny, a_out, b_in])
    assert both.allows(a, b, 80) and not both.allows(a, b, 81) and not both.allows(b, a, 80)
    assert both.allows(a, INTERNET, 9999) and not both.allows(a, PRIVATE, 443)
    assert not both.allows(INTERNET, b, 80)
