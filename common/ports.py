"""The ports of one data directory's stack, kept with its data so that stacks run side by side.

`make run` chooses each internal port that no variable sets once per DATA_DIR and keeps them in
`DATA_DIR/ports.json` (by the variable that sets each), so a second stack with its own DATA_DIR and PORT
never collides with the first, and a restart reuses its ports. The launcher rewrites the file with the ports
it actually uses on every start (the edge's PORT included), which is how operator commands (`fsg-billing
import`, `fsg local-stripe …`) find their own stack's services by DATA_DIR alone. The edge's PORT is never
chosen: it stays 3000 unless set, since people type it.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Mapping
from pathlib import Path

from common.settings import (
    DEFAULT_AUTH_PORT,
    DEFAULT_BILLING_PORT,
    DEFAULT_EDGE_PORT,
    DEFAULT_GENERATION_PORT,
    DEFAULT_LOCALSTRIPE_PORT,
    DEFAULT_MAILSINK_PORT,
    DEFAULT_PG_PORT,
    DEFAULT_SIMULATOR_PORT,
)

PORTS_FILE = "ports.json"
EDGE = "PORT"
#: Every internal port the launcher hands out, by the variable that sets it, with the fixed port an operator
#: command falls back to when no stack has kept its ports in the data directory.
INTERNAL = {
    "PG_PORT": DEFAULT_PG_PORT,
    "AUTH_PORT": DEFAULT_AUTH_PORT,
    "BILLING_PORT": DEFAULT_BILLING_PORT,
    "GENERATION_PORT": DEFAULT_GENERATION_PORT,
    "SIM_PORT": DEFAULT_SIMULATOR_PORT,
    "LOCALSTRIPE_PORT": DEFAULT_LOCALSTRIPE_PORT,
    "MAILSINK_PORT": DEFAULT_MAILSINK_PORT,
}
#: Chosen ports come from below Linux's ephemeral range (32768–60999), which outgoing connections draw
#: from: a kept port there could be taken by some client's socket the next time the stack starts.
_CHOSEN_RANGE = (20000, 32768)


class PortTaken(Exception):
    """A port the stack needs is in use; the message is the one line the operator sees."""


def ports_file(data_dir: Path) -> Path:
    return data_dir / PORTS_FILE


def kept_ports(data_dir: Path) -> dict[str, int]:
    """The ports this data directory's stack last started with ({} if it never started)."""
    path = ports_file(data_dir)
    if not path.exists():
        return {}
    return {variable: int(port) for variable, port in json.loads(path.read_text()).items()}


def stack_port(data_dir: Path, variable: str, given: int | None = None) -> int:
    """For operator commands: the port set by its variable, else the one the stack on `data_dir` uses, else
    the fixed default."""
    if given is not None:
        return given
    defaults = {**INTERNAL, EDGE: DEFAULT_EDGE_PORT}
    return kept_ports(data_dir).get(variable, defaults[variable])


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now. SO_REUSEADDR as every server here sets it, so a
    connection still in TIME_WAIT does not count as taken, only a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _choose(avoid: set[int]) -> int:
    for _ in range(200):
        port = random.randrange(*_CHOSEN_RANGE)
        if port not in avoid and is_free(port):
            return port
    low, high = _CHOSEN_RANGE
    raise PortTaken(f"no free port found between {low} and {high - 1}; set the *_PORT variables")


def assign_ports(data_dir: Path, given: Mapping[str, int | None], edge_port: int) -> dict[str, int]:
    """The launcher's ports: each internal one from its variable, else kept in ports.json, else chosen now;
    written back (with the edge's) so that a restart and the operator commands find them."""
    kept = kept_ports(data_dir)
    ports = {variable: port for variable in INTERNAL if (port := given.get(variable) or kept.get(variable))}
    for variable in INTERNAL:
        if variable not in ports:
            ports[variable] = _choose(set(ports.values()) | {edge_port})
    ports = {variable: ports[variable] for variable in INTERNAL}
    data_dir.mkdir(parents=True, exist_ok=True)
    path = ports_file(data_dir)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({**ports, EDGE: edge_port}, indent=2) + "\n")
    partial.replace(path)
    return ports


def check_free(wanted: Mapping[str, tuple[str, int]], given: Mapping[str, int | None], data_dir: Path) -> None:
    """Raise PortTaken naming the first port of `wanted` (variable → (host, port)) that is in use, and the
    variable that sets it; before anything starts, so a refused start leaves nothing running."""
    for variable, (host, port) in wanted.items():
        if is_free(port, host):
            continue
        where = "" if given.get(variable) else f" (kept in {ports_file(data_dir)})"
        raise PortTaken(f"port {port} is already in use{where}: set {variable} to a free port, "
                        f"or stop what listens on it")
