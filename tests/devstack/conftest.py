"""Fixtures for the launcher's tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A folder for DATA_DIRs whose embedded PostgreSQL starts mid-session, outside /tmp/pytest-of-<user>.

    As root the server runs as another user, so every ancestor of its data must be traversable (o+x;
    devstack/embedded_pg.py grants it). pytest takes that bit off /tmp/pytest-of-<user> whenever any pytest
    process on the machine starts, so a server started there later can find its own folder unreadable.
    """
    root = Path(tempfile.mkdtemp(prefix="fsg-test-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
