"""Hosts for the multi-host test: each a Linux network namespace of its own, on a bridge that lives in a
namespace of its own, plus dedicated point-to-point links between chosen pairs of hosts.

No namespace gets a default route and nothing is addressed in the root namespace, so a link that is down
makes its packets undeliverable (no route), instead of letting them find another way. Namespace names
carry this process's id (`fsgmh<pid>-<host>`), so a run never touches another's, and the leftovers of a
run that died (its pid gone) are found by that prefix and removed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "fsgmh"
#: The interface of each host on the shared bridge.
BRIDGE_PORT = "eth0"
_OURS = re.compile(rf"^{PREFIX}(\d+)\D")  # the pid, then the rest of the name


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One `ip` command (iproute2); a failure raises with ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces cannot be made here (a skip reason), or None when they can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (run the multi-host test as root, as CI does)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    try:
        entered = ip("netns", "exec", probe, "ip", "link", "set", "lo", "up", check=False)
    finally:
        ip("netns", "delete", probe, check=False)
    if entered.returncode != 0:
        return f"cannot run a process in a network namespace here: {entered.stderr.strip()}"
    return None


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_namespace(name: str) -> None:
    """Kill what still runs inside `name` (processes a test of ours started there), then delete it."""
    for _ in range(50):
        pids = [int(p) for p in ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    ip("netns", "delete", name, check=False)


def remove_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone (a crashed or killed test)."""
    removed = []
    for name in namespaces():
        match = _OURS.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            remove_namespace(name)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    #: Its address on the shared bridge.
    addr: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host (`ip netns exec` execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Topology:
    """A bridge namespace and hosts on it; `destroy()` removes every namespace this object made."""

    network: ipaddress.IPv4Network
    run_id: str = field(default_factory=lambda: str(os.getpid()))
    hosts: dict[str, Host] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def _netns(self, name: str) -> str:
        netns = f"{PREFIX}{self.run_id}-{name}"
        ip("netns", "add", netns)
        self.made.append(netns)
        # IPv4 only: no IPv6 link-local chatter (router solicitations, MLD) on the cables, so their byte
        # counters count the hosts' own traffic.
        ip("netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
        ip("-n", netns, "link", "set", "lo", "up")
        return netns

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.run_id}-bridge"

    def build(self, hosts: dict[str, int]) -> None:
        """The bridge namespace, and one host per name with the given last octet on the bridge's network."""
        self._netns("bridge")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for name, octet in hosts.items():
            netns = self._netns(name)
            addr = str(self.network.network_address + octet)
            port = f"p-{name}"
            ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", BRIDGE_PORT, "netns", netns)
            ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
            ip("-n", netns, "addr", "add", f"{addr}/{self.network.prefixlen}", "dev", BRIDGE_PORT)
            ip("-n", netns, "link", "set", BRIDGE_PORT, "up")
            self.hosts[name] = Host(name, netns, addr)

    def link(self, a: str, b: str, subnet: str) -> tuple[str, str]:
        """A dedicated cable between hosts `a` and `b` on its own small `subnet` (.1 is `a`, .2 is `b`); its
        interfaces are named after the other end (`to-b` in `a`, `to-a` in `b`). Answers (a's, b's) address."""
        net = ipaddress.ip_network(subnet)
        ends = (str(net.network_address + 1), str(net.network_address + 2))
        ip("-n", self.hosts[a].netns, "link", "add", f"to-{b}", "type", "veth", "peer", "name", f"to-{a}",
           "netns", self.hosts[b].netns)
        for host, other, addr in ((a, b, ends[0]), (b, a, ends[1])):
            ip("-n", self.hosts[host].netns, "addr", "add", f"{addr}/{net.prefixlen}", "dev", f"to-{other}")
            ip("-n", self.hosts[host].netns, "link", "set", f"to-{other}", "up")
        return ends

    def cut(self, host: str, towards: str) -> None:
        """Take `host`'s dedicated link to `towards` down (from `host`'s side)."""
        ip("-n", self.hosts[host].netns, "link", "set", f"to-{towards}", "down")

    def restore(self, host: str, towards: str) -> None:
        ip("-n", self.hosts[host].netns, "link", "set", f"to-{towards}", "up")

    def link_is_up(self, host: str, towards: str) -> bool:
        shown = ip("-n", self.hosts[host].netns, "-o", "link", "show", f"to-{towards}").stdout
        return ",UP" in shown or "<UP" in shown

    def traffic(self, host: str, towards: str) -> tuple[int, int]:
        """Bytes (received, sent) so far on `host`'s cable to `towards`, by the kernel's own counters."""
        shown = json.loads(ip("-n", self.hosts[host].netns, "-s", "-j", "link", "show", "dev", f"to-{towards}").stdout)
        stats = shown[0]["stats64"]
        return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])

    def start(self, host: str, argv: Sequence[str], env: dict[str, str], log: Path,
              cwd: Path) -> subprocess.Popen[bytes]:
        """Start `argv` on `host`, output to `log`; stopped by `stop_all`."""
        with log.open("ab") as out:
            proc = subprocess.Popen(self.hosts[host].command(argv), env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str], env: dict[str, str], cwd: Path,
            timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `argv` on `host` to completion (a hang guard of `timeout` seconds)."""
        return subprocess.run(self.hosts[host].command(argv), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def stop_all(self, grace: float = 15) -> None:
        """SIGTERM every process started here (each drains as in production), SIGKILL what outlives `grace`."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def destroy(self) -> None:
        """Stop our processes, then delete every namespace made here (whatever still runs inside is killed)."""
        self.stop_all()
        for netns in reversed(self.made):
            remove_namespace(netns)
        self.made.clear()
