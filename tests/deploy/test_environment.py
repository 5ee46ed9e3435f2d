"""Every process gets, in docker-compose.yml and in every Kubernetes overlay, each setting it needs in production
(its settings class's DEPLOY_REQUIRED, and for a gRPC process its TLS identity) and nothing its settings class
does not read (a misspelt name is silently ignored by the process, so only this catches it), and both give it
the same names."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from honcho.environ import parse_procfile

from common.settings import REPO_ROOT
from tests.deploy.manifests import (
    COMPOSE_TOOLS,
    GRPC_PROCESSES,
    OVERLAYS,
    PROCESSES,
    TLS_SETTINGS,
    compose,
    compose_env,
    container_env,
    process_of,
    reads,
    required,
    settings_of,
    workloads,
)

#: Images that are not ours and read their own variables (compose's database; the dev overlay's).
FOREIGN_IMAGES = ("postgres:",)


def _compose_processes() -> dict[str, set[str]]:
    """Process name → the variable names docker-compose.yml gives it."""
    out: dict[str, set[str]] = {}
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith(FOREIGN_IMAGES) or name in COMPOSE_TOOLS:
            continue
        process, _ = process_of(service["command"])
        assert process not in out, f"two compose services run {process}"
        out[process] = set(compose_env(service))
        assert name == process or process == "bootstrap", f"compose service {name} runs {process}"
    return out


def _k8s_processes(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for _obj, template in workloads(objects):
        for container in template["spec"]["containers"]:
            if str(container["image"]).startswith(FOREIGN_IMAGES):
                continue
            process, _ = process_of(container["command"])
            assert process not in out, f"two workloads run {process}"
            out[process] = set(container_env(container))
    return out


def _check(where: str, declared: dict[str, set[str]]) -> list[str]:
    problems = []
    assert set(declared) == {p for p, _ in PROCESSES.values()}, f"{where} runs {sorted(declared)}"
    for command, (process, cls) in PROCESSES.items():
        names = declared[process]
        for name in sorted(required(cls) - names):
            problems.append(f"{where}: {process} ({' '.join(command)}) needs {name} and is not given it")
        for name in sorted(names - reads(cls)):
            problems.append(f"{where}: {process} is given {name}, which {cls.__name__} does not read")
        if process in GRPC_PROCESSES and not any(way <= names for way in TLS_SETTINGS):
            problems.append(f"{where}: {process} speaks gRPC and is given no TLS identity "
                            f"({' or '.join('+'.join(sorted(way)) for way in TLS_SETTINGS)})")
    return problems


def test_compose_gives_each_process_what_it_needs_and_nothing_it_does_not_read() -> None:
    problems = _check("docker-compose.yml", _compose_processes())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_gives_each_process_what_it_needs_and_nothing_it_does_not_read(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    problems = _check(f"deploy/k8s/overlays/{overlay}", _k8s_processes(rendered[overlay]))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_compose_and_kubernetes_give_each_process_the_same_names(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    in_compose, in_k8s = _compose_processes(), _k8s_processes(rendered[overlay])
    for process in in_compose:
        assert in_compose[process] == in_k8s[process], (
            f"{process}: only in compose {sorted(in_compose[process] - in_k8s[process])}, "
            f"only in {overlay} {sorted(in_k8s[process] - in_compose[process])}")


def test_compose_takes_every_secret_from_the_environment_never_a_literal() -> None:
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith(FOREIGN_IMAGES) or name in COMPOSE_TOOLS:
            continue
        _, cls = process_of(service["command"])
        settings = settings_of(cls)
        for env, value in compose_env(service).items():
            if env in settings and settings[env].secret:
                assert "${" in value, f"compose {name}: {env} is a secret; take it from the environment (${{…}})"


def test_the_settings_reading_is_the_library_s_own() -> None:
    """The names come from pydantic-settings itself: prefixes and aliases resolve as the processes read them."""
    _, billing = PROCESSES[("python", "-m", "services.billing.server")]
    names = settings_of(billing)
    assert names["BILLING_HOST"].field == "host" and names["STRIPE_SECRET_KEY"].secret
    assert names["AUTH_ADDR"].field == "auth_addr" and not names["AUTH_ADDR"].secret
    assert "SMTP_URL" in names and "BILLING_SMTP_URL" in names["SMTP_URL"].also  # populate_by_name reads both
    assert required(billing) >= {"BILLING_HOST", "DATABASE_URL", "FSG_SERVICE_TOKEN", "STRIPE_SECRET_KEY", "SMTP_URL"}


def test_the_deployments_run_what_make_run_runs() -> None:
    """Each process of the Procfile (what `make run` starts) is started by the same command in the deployments."""
    procfile = parse_procfile((REPO_ROOT / "Procfile").read_text()).processes
    by_name = {name: command for command, (name, _) in PROCESSES.items()}
    for name, command in procfile.items():
        assert tuple(shlex.split(command)) == by_name[name], f"Procfile runs {name} as {command}"
