"""Two `make run` side by side (issue 14, part 1): each DATA_DIR chooses and keeps its own internal ports
(DATA_DIR/ports.json), so two launchers given only their own PORT and DATA_DIR run at once, each with its own
data, and the operator commands find their own stack by DATA_DIR alone. A taken port stops the launcher with
one line naming the port and its variable, before anything starts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from common.ports import INTERNAL
from devstack.embedded_pg import EmbeddedPostgres
from tests.devstack.test_run import PORT_VARIABLES, Run
from tests.stack import free_port


def _admin_key(run: Run) -> str:
    match = re.search(r"Admin user created with API key: (admin_[0-9a-f]{64})", "\n".join(run.lines))
    assert match, "\n".join(run.lines)
    return match.group(1)


def _operator(module: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An operator command as typed in another shell: DATA_DIR and nothing else of the stack's."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "AUTH_ADDR", "BILLING_ADDR", "PORT", *PORT_VARIABLES.values()}
           and not k.startswith(("FSG_SERVICE_", "STRIPE_"))}
    return subprocess.run([sys.executable, "-m", module, *args], env={**env, "DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=60)


def test_two_stacks_run_side_by_side_each_with_its_own_data(data_root: Path) -> None:
    dirs = {"a": data_root / "a", "b": data_root / "b"}
    edges = {name: free_port() for name in dirs}
    runs: dict[str, Run] = {}
    try:
        for name in dirs:  # b starts while a runs, as a second `make run` would (a's ports are then taken)
            runs[name] = Run(dirs[name], {"edge": edges[name]})
            runs[name].wait_ready()
        kept = {name: json.loads((dirs[name] / "ports.json").read_text()) for name in dirs}
        for name in dirs:
            assert set(kept[name]) == {*INTERNAL, "PORT"} and kept[name]["PORT"] == edges[name]
            pg_line = next(line for line in runs[name].lines if line.startswith("DATABASE_URL="))
            assert pg_line.endswith(f"@127.0.0.1:{kept[name]['PG_PORT']}/filmscript"), pg_line
        ports_a, ports_b = (set(kept[name].values()) for name in dirs)
        assert len(ports_a) == len(ports_b) == len(INTERNAL) + 1 and not ports_a & ports_b

        # The same username in both, with different emails: two databases, each serving its own users.
        admins = {name: {"X-API-Key": _admin_key(runs[name])} for name in dirs}
        keys = {}
        for name in dirs:
            created = httpx.post(f"{runs[name].url}/api/admin/create-user", headers=admins[name], timeout=30,
                                 json={"username": "johndoe", "email": f"john-{name}@example.com",
                                       "initialCredits": 42 if name == "a" else 7})
            assert created.status_code == 201, created.text
            keys[name] = created.json()["user"]["api_key"]
        for name, other in (("a", "b"), ("b", "a")):
            own = httpx.get(f"{runs[name].url}/api/my-stats", headers={"X-API-Key": keys[name]})
            assert own.status_code == 200, own.text
            assert own.json()["user"]["credits_remaining"] == (42 if name == "a" else 7)
            assert httpx.get(f"{runs[other].url}/api/my-stats", headers={"X-API-Key": keys[name]}).status_code == 401

        # Operator commands find their own stack's database and services by DATA_DIR alone.
        for name in dirs:
            url = _operator("devstack.cli", dirs[name], "db-url")
            assert url.returncode == 0 and f"@127.0.0.1:{kept[name]['PG_PORT']}/" in url.stdout, url.stderr
            listed = _operator("services.auth.cli", dirs[name], "list-users")
            assert listed.returncode == 0 and f"john-{name}@example.com" in listed.stdout, listed.stderr
            exported = _operator("services.billing.cli", dirs[name], "export", "users")  # gRPC to its services
            assert exported.returncode == 0, exported.stderr
            assert f"john-{name}@example.com" in exported.stdout and "@example.com" in exported.stdout
            other = "b" if name == "a" else "a"
            assert f"john-{other}@example.com" not in exported.stdout
            reconcile = _operator("services.billing.cli", dirs[name], "reconcile")
            assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
            assert "every purchase what Stripe says" in reconcile.stdout  # its own local Stripe, found by itself

        # `fsg local-stripe refund` acts on b's own local Stripe and delivers to b's own edge (PORT 3000 is not it).
        paid = httpx.post(f"{runs['b'].url}/api/purchases", headers={"X-API-Key": keys["b"]}, timeout=30,
                          json={"pack": "starter", "testCard": "4242 4242 4242 4242"})
        assert paid.status_code == 201, paid.text
        deadline = time.monotonic() + 20
        while (purchase := httpx.get(f"{runs['b'].url}/api/my-purchases", headers={"X-API-Key": keys["b"]}
                                     ).json()["purchases"][0])["state"] != "succeeded":
            assert time.monotonic() < deadline, "the webhook never credited the purchase"
            time.sleep(0.2)
        refunded = _operator("devstack.cli", dirs["b"], "local-stripe", "refund", purchase["paymentIntentId"])
        assert refunded.returncode == 0 and '"outcome":"applied"' in refunded.stdout, refunded.stdout + refunded.stderr
        assert httpx.get(f"{runs['b'].url}/api/my-purchases", headers={"X-API-Key": keys["b"]}
                         ).json()["purchases"][0]["state"] == "refunded"

        # A second launcher on a's DATA_DIR (another PORT) is refused in one line and leaves a's stack serving.
        again = _launch(dirs["a"])
        assert again.returncode == 1, again.stdout + again.stderr
        assert len(again.stderr.strip().splitlines()) == 1, again.stderr
        assert f"is `make run` already running with DATA_DIR={dirs['a']}?" in again.stderr
        assert httpx.get(f"{runs['a'].url}/readyz").status_code == 200

        # A restart (the other stack still running) reuses the kept ports and finds its data.
        runs["a"].stop(signal.SIGTERM)
        runs["a"] = Run(dirs["a"], {"edge": edges["a"]})
        runs["a"].wait_ready()
        assert json.loads((dirs["a"] / "ports.json").read_text()) == kept["a"]
        stats = httpx.get(f"{runs['a'].url}/api/my-stats", headers={"X-API-Key": keys["a"]})
        assert stats.status_code == 200 and stats.json()["user"]["credits_remaining"] == 42
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.stop(signal.SIGTERM)
    for name in dirs:
        assert not EmbeddedPostgres(dirs[name], kept[name]["PG_PORT"]).is_running()


@contextmanager
def _listening() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def _launch(data_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "ANTHROPIC_API_KEY", "STRIPE_SECRET_KEY", "SMTP_URL",
                        *PORT_VARIABLES.values()}}
    return subprocess.run([sys.executable, "-m", "devstack.cli", "run"], timeout=60, capture_output=True, text=True,
                          env={**env, "DATA_DIR": str(data_dir), "PORT": str(free_port()), **variables})


def test_a_taken_port_is_one_line_naming_it_and_its_variable_and_nothing_starts(tmp_path: Path) -> None:
    # Set by its variable.
    with _listening() as taken:
        refused = _launch(tmp_path / "set", AUTH_PORT=str(taken))
    assert refused.returncode != 0
    assert refused.stderr.strip() == (f"fsg run: port {taken} is already in use: set AUTH_PORT to a free port, "
                                      "or stop what listens on it"), refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not (tmp_path / "set" / "postgres").exists()  # checked before PostgreSQL was even initialised

    # Kept in the data directory (the case: PostgreSQL's port, once a fixed 55432, taken by another).
    data_dir = tmp_path / "kept"
    with _listening() as taken:
        data_dir.mkdir()
        (data_dir / "ports.json").write_text(json.dumps({"PG_PORT": taken}))
        refused = _launch(data_dir)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {taken} " in lines[0] and "PG_PORT" in lines[0], refused.stderr
    assert str(data_dir / "ports.json") in lines[0]
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not (data_dir / "postgres").exists()

    # The edge's own PORT.
    with _listening() as taken:
        refused = _launch(tmp_path / "edge", PORT=str(taken))
    assert refused.returncode != 0 and f"port {taken} is already in use: set PORT " in refused.stderr, refused.stderr
