"""The overlays built once per session, from a copy of deploy/k8s/ with secrets written as an operator would."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.deploy.manifests import K8S, OVERLAYS, build, fill_secrets


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets"))  # never an operator's real secrets
    fill_secrets(tree)
    return {overlay: build(tree, overlay) for overlay in OVERLAYS}
