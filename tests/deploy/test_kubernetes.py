"""deploy/k8s/: every overlay builds with kustomize, every object it makes passes the Kubernetes API schema
(kubernetes-validate, strict: an unknown field is an error), and the objects do what the issue asks of them."""

from __future__ import annotations

import ipaddress
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    OVERLAYS,
    PROCESSES,
    container_env,
    process_of,
    settings_of,
    workloads,
)

Objects = list[dict[str, Any]]
SERVICES = ("auth", "billing", "generation")


def _by_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _component(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def test_there_are_overlays_and_each_makes_the_whole_system(rendered: dict[str, Objects]) -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)
    for overlay, objects in rendered.items():
        deployments = _by_kind(objects, "Deployment")
        assert set(deployments) == {*SERVICES, "edge"}, overlay
        assert {"auth", "billing", "generation", "edge"} <= set(_by_kind(objects, "Service")), overlay
        assert "fsg-bootstrap" in _by_kind(objects, "Job"), overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_passes_the_kubernetes_schema(rendered: dict[str, Objects], overlay: str) -> None:
    failures = []
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_the_validator_refuses_a_broken_object() -> None:
    """The schema check can fail: a Deployment with a misspelt field and a string for replicas is refused."""
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "two", "selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                           {"name": "x", "image": "x", "imagePullPolicyy": "Always"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_runs_two_replicas_with_probes_and_resources(rendered: dict[str, Objects], overlay: str) -> None:
    for name, deployment in _by_kind(rendered[overlay], "Deployment").items():
        assert deployment["spec"]["replicas"] >= 2, name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if name == "edge":
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert ports == {"http": int(container_env(container)["PORT"]["value"])}
        else:
            # Ready: gRPC health SERVING (only while the database answers), asked over mutual TLS with the pod's
            # own certificate, since the kubelet's gRPC probe cannot present one. Alive: the port accepts.
            assert container["readinessProbe"]["exec"]["command"] == [
                "python", "-m", "devstack.healthcheck", f"127.0.0.1:{ports['grpc']}", name]
            assert container["readinessProbe"]["timeoutSeconds"] >= 3, "the probe starts Python: give it time"
            assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
            _, cls = process_of(container["command"])
            default_port = cls.model_fields["port"].default
            assert ports["grpc"] == default_port, f"{name} listens on {default_port} (no {name.upper()}_PORT is set)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_has_a_disruption_budget_and_a_service_that_select_its_pods(
        rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    budgets = _by_kind(objects, "PodDisruptionBudget")
    services = _by_kind(objects, "Service")
    for name, deployment in _by_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budget = budgets[name]["spec"]
        assert budget["selector"]["matchLabels"].items() <= labels.items(), name
        assert budget.get("maxUnavailable", 0) >= 1 or budget.get("minAvailable", 2) < deployment["spec"]["replicas"]
        service = services[name]["spec"]
        assert service["selector"].items() <= labels.items(), name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["ports"]} <= names, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_edge_and_generation_autoscale(rendered: dict[str, Objects], overlay: str) -> None:
    autoscalers = _by_kind(rendered[overlay], "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"edge", "generation"}
    for name, hpa in autoscalers.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
        assert spec["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inline_and_every_reference_resolves(
        rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    secrets = _by_kind(objects, "Secret")
    for obj, template in workloads(objects):
        for container in template["spec"]["containers"]:
            for name, item in container_env(container).items():
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] in secrets, f"{obj['metadata']['name']}: {name} names a missing Secret {ref}"
                    assert ref["key"] in secrets[ref["name"]]["data"], f"{name}: no key {ref['key']} in {ref['name']}"
            if tuple(container.get("command", ())) not in PROCESSES:
                continue  # not one of ours (the dev overlay's PostgreSQL); test_environment checks there is no other
            _, cls = process_of(container["command"])
            for env, setting in settings_of(cls).items():
                if setting.secret and env in container_env(container):
                    assert "secretKeyRef" in container_env(container)[env].get("valueFrom", {}), \
                        f"{obj['metadata']['name']}: {env} is a secret and must come from a Secret, not a value"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_bootstrap_job_migrates_with_the_owner_and_the_role_passwords(
        rendered: dict[str, Objects], overlay: str) -> None:
    job = _by_kind(rendered[overlay], "Job")["fsg-bootstrap"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["fsg", "bootstrap"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_image_is_the_one_image_everywhere(rendered: dict[str, Objects], overlay: str) -> None:
    images = {c["image"] for obj, t in workloads(rendered[overlay]) if _component(obj) != "database"
              for c in t["spec"]["containers"]}
    assert len(images) == 1, images
    (image,) = images
    if overlay == "prod":
        assert ":" in image and not image.endswith(":latest"), f"prod runs a pinned release, not {image}"


def test_prod_reaches_an_external_database_by_address(rendered: dict[str, Objects]) -> None:
    """prod runs no database pod: its policies name the database's network instead, a private one."""
    objects = rendered["prod"]
    assert not any(_component(o) == "database" for o, _ in workloads(objects))
    blocks = {peer["ipBlock"]["cidr"] for p in _by_kind(objects, "NetworkPolicy").values()
              for rule in p["spec"].get("egress", []) for peer in rule.get("to", []) if "ipBlock" in peer}
    assert any(ipaddress.ip_network(b).is_private for b in blocks), blocks


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_are_headless_and_dialled_by_dns_targets(rendered: dict[str, Objects], overlay: str) -> None:
    """Per-call balancing: a headless Service's DNS name resolves to every ready pod, and a `dns:///` target
    lets the client's round_robin policy use them all (a ClusterIP would pin each connection to one pod)."""
    objects = rendered[overlay]
    services = _by_kind(objects, "Service")
    for name in SERVICES:
        assert services[name]["spec"].get("clusterIP") == "None", f"{overlay}: Service {name} is not headless"
    dialled = set()
    for obj, template in workloads(objects):
        for container in template["spec"]["containers"]:
            for env, item in container_env(container).items():
                if env.endswith("_ADDR"):
                    target = item["value"]
                    assert target.startswith("dns:///"), f"{obj['metadata']['name']}: {env}={target} is no dns: target"
                    host, _, port = target.removeprefix("dns:///").rpartition(":")
                    assert host.split(".")[0] in services and int(port) in {
                        p["port"] for p in services[host.split(".")[0]]["spec"]["ports"]}, target
                    dialled.add(host.split(".")[0])
    assert dialled == set(SERVICES), dialled
