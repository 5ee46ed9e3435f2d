"""docker-compose.yml passes the Compose Specification's JSON schema, as check-jsonschema ships it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.manifests import COMPOSE


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_the_compose_file_passes_the_compose_spec_schema() -> None:
    result = _check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_broken_compose_file(tmp_path: Path) -> None:
    """The check can fail: a service whose `depends_on` condition is not one the spec knows is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: service_happy", 1))
    result = _check(broken)
    assert result.returncode != 0, result.stdout
