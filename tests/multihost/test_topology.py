"""The multi-host test's hosts never outlive it: `destroy` removes every namespace it made and what runs in
them, and the namespaces of a run whose process died are removed by the next run (by their prefix)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.multihost.topology import (
    PREFIX,
    Topology,
    ip,
    namespaces,
    remove_leftovers,
    remove_namespace,
    unavailable,
)


@pytest.fixture(scope="module", autouse=True)
def can_make_namespaces() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (as a crashed test run's would be)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@pytest.fixture
def sleeper_ns() -> Iterator[list[str]]:
    """Namespace names to delete whatever happens."""
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            remove_namespace(name)


def _sleep_in(netns: str) -> subprocess.Popen[bytes]:
    """A process inside `netns`, returned once it is in there (`ip netns pids` lists it): before that, a
    namespace removed under it would not find it."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", "import time; time.sleep(300)"])
    deadline = time.monotonic() + 10
    while str(proc.pid) not in ip("netns", "pids", netns).stdout.split():
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{proc.pid} never showed up in {netns}")
        time.sleep(0.05)
    return proc


def test_a_dead_runs_namespaces_are_removed_a_live_ones_kept(dead_pid: int, sleeper_ns: list[str]) -> None:
    dead, live = f"{PREFIX}{dead_pid}-db", f"{PREFIX}{os.getppid()}-db"
    for name in (dead, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
        sleeper_ns.append(name)
    orphan = _sleep_in(dead)
    try:
        removed = remove_leftovers()
        assert dead in removed and dead not in namespaces()
        assert orphan.wait(10) != 0  # killed along with its namespace
        assert live in namespaces() and live not in removed
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_destroy_removes_every_namespace_and_process() -> None:
    topology = Topology(ipaddress.IPv4Network("10.250.0.0/24"), run_id=f"{os.getpid()}x")
    try:
        topology.build({"a": 10, "b": 11})
        topology.link("a", "b", "10.251.1.0/24")
        assert topology.link_is_up("a", "b")
        topology.cut("a", "b")
        assert not topology.link_is_up("a", "b")
        made = list(topology.made)
        assert len(made) == 3 and all(name in namespaces() for name in made)
        stray = _sleep_in(topology.hosts["b"].netns)  # not started through the topology: destroy still ends it
    finally:
        topology.destroy()
    assert not [name for name in namespaces() if name in made]
    assert stray.wait(10) != 0
