"""The system across real addresses: every process on a host of its own (a network namespace), and one
edge's link to one billing replica cut under load and restored.

    lg (load generator)      e1 (edge)  e2 (edge)       svc (auth, generation, Claude simulator)
        10.250.0.50          .41        .42             10.250.0.20
             │                │  │       │  │                │
    ═════════╧════════════════╧══╪═══════╧══╪════════════════╧══════╤══════════╤══════════╤══  br0 (its own
                                 │          │                       │          │          │   namespace),
                          to-b1 ─┤          ├─ to-b1          db 10.250.0.10  b1 .31     b2 .32  10.250.0.0/24
                          to-b2 ─┘          └─ to-b2          (PostgreSQL)    (billing)  (billing)

    dedicated cables, one per (edge, billing) pair: e1–b1 10.251.11.0/24, e1–b2 10.251.12.0/24,
    e2–b1 10.251.21.0/24, e2–b2 10.251.22.0/24 (the edge is .1, billing .2)

Each edge reaches both billing replicas only over its own cables (`BILLING_ADDR=ipv4:10.251.N1.2:50062,
10.251.N2.2:50062`, spread round-robin), so taking e1's `to-b1` down cuts exactly e1 → b1: e1 → b2 and
e2 → b1 stay up, and with no default route anywhere, e1's packets to b1 have nowhere to go. Everything
else (clients to edges, edges to auth and generation, services to PostgreSQL) crosses the bridge.

The verdict comes from the database and from the load generator's own record of what each client saw,
never from the services' view: every account's initial grant minus its usage_logs charges is its balance;
each call a client saw succeed was charged once, what it was told; a call it saw fail was not charged;
every hold is resolved; `fsg-billing reconcile` is clean. And the cut must have bitten, by the kernel's
byte counters and the clients' records: e1's cable to b1 was carrying e1's calls up to the cut and nothing
during it, e1 went on talking to b2 over its other cable, and e1 went on serving (at least a quarter as many
calls answered during the cut as e2).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.settings import REPO_ROOT
from devstack.embedded_pg import EmbeddedPostgres
from tests.multihost.topology import Topology, remove_leftovers, unavailable

NETWORK = ipaddress.IPv4Network("10.250.0.0/24")
HOSTS = {"db": 10, "svc": 20, "b1": 31, "b2": 32, "e1": 41, "e2": 42, "lg": 50}
EDGES = {"e1": "edge1", "e2": "edge2"}
BILLINGS = ("b1", "b2")
PG_PORT, AUTH_PORT, BILLING_PORT, GENERATION_PORT, SIM_PORT, EDGE_PORT = 5432, 50061, 50062, 50063, 3090, 3000

USERS = 24
CREDITS = 1000  # generate-structure holds 10 and costs about 0.25: nobody runs out, so every call can succeed
CONCURRENCY = 16  # 8 calls in flight per edge
CALL_DEADLINE = 60.0  # a client gives up on a call after this long (holds live 17 s; see HOLD_SETTINGS)
WARM_CALLS = 20  # successful calls per edge before the cut
CUT_SECONDS = 10.0  # how long e1 → b1 stays cut (the fault's length, not a measurement)
AFTER_CALLS = 20  # successful calls e1 finishes after the link is back, before the load stops
#: What e1's cable to b2 must carry each way during the cut to count as e1 still talking to b2: less than
#: one billing call and its answer with their TCP packets (a request alone is several hundred bytes), more
#: than a stray ARP exchange (under 128). A channel that never connected to b2 carries 0.
MIN_CABLE_BYTES = 256
#: A hold lives EDGE_GENERATION_TIMEOUT_SECONDS + EDGE_SETTLE_RETRY_SECONDS + EDGE_HOLD_MARGIN_SECONDS
#: (17 s): one the edge could not settle expires quickly. Billing calls give up after 2 s (a call stuck on
#: the cut link), and Commit/Release are retried for 5 s (on the other replica, once round-robin moves on).
HOLD_SETTINGS = {
    "EDGE_RPC_TIMEOUT_SECONDS": "2",
    "EDGE_GENERATION_TIMEOUT_SECONDS": "10",
    "EDGE_SETTLE_RETRY_SECONDS": "5",
    "EDGE_HOLD_MARGIN_SECONDS": "2",
    "BILLING_SWEEP_INTERVAL_SECONDS": "0.5",
}


@dataclass
class MultiHost:
    topology: Topology
    folder: Path
    env: dict[str, str] = field(repr=False)
    #: The owner's and the services' database URLs and the admin key: never in a failure's message.
    secrets: dict[str, Any] = field(repr=False)

    def addr(self, host: str) -> str:
        return self.topology.hosts[host].addr

    def edge_url(self, host: str) -> str:
        return f"http://{self.addr(host)}:{EDGE_PORT}"

    def on(self, host: str, argv: list[str], timeout: float = 120, **env: str) -> str:
        """Run a Python module on `host` with the owner's DATABASE_URL; its stdout, or fail with its output."""
        env = {**self.env, **env, "DATABASE_URL": self.secrets["dsn"]}
        done = self.topology.run(host, [sys.executable, "-m", *argv], env, REPO_ROOT, timeout)
        assert done.returncode == 0, f"{argv} on {host}: {done.stdout}\n{done.stderr}"
        return done.stdout


def _base_env(folder: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FSG_SERVICE_") and k != "DATABASE_URL"}
    token = folder / "service-token"
    token.touch(mode=0o600)
    token.write_text(os.urandom(32).hex())
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(folder),
        "FSG_SERVICE_TOKEN_FILE": str(token),
        # Limits off: 16 calls in flight over 24 users is load, not abuse (tests/edge/test_rate_limits.py).
        "BILLING_DEFAULT_REQUESTS_PER_MINUTE": "0",
        "BILLING_DEFAULT_MAX_CONCURRENT": "0",
        "DB_POOL_MAX": "10",
        **HOLD_SETTINGS,
    }


def _process_envs(mh: MultiHost) -> dict[str, tuple[str, str, dict[str, str]]]:
    """Each process: (host, module, its own settings). Every address and port is set explicitly."""
    svc, roles = mh.addr("svc"), mh.secrets["roles"]
    services = {"AUTH_ADDR": f"{svc}:{AUTH_PORT}", "GENERATION_ADDR": f"{svc}:{GENERATION_PORT}"}
    envs: dict[str, tuple[str, str, dict[str, str]]] = {
        "simulator": ("svc", "simulator", {"SIM_HOST": svc, "SIM_PORT": str(SIM_PORT)}),
        "auth": ("svc", "services.auth.server", {"AUTH_HOST": svc, "AUTH_PORT": str(AUTH_PORT),
                                                 "DATABASE_URL": roles["auth"]}),
        "generation": ("svc", "services.generation.server", {
            "GENERATION_HOST": svc, "GENERATION_PORT": str(GENERATION_PORT), "DATABASE_URL": roles["generation"],
            "ANTHROPIC_BASE_URL": f"http://{svc}:{SIM_PORT}", "ANTHROPIC_API_KEY": "simulator",
            "GENERATION_SIMULATED": "1", "GENERATION_ANTHROPIC_TIMEOUT_SECONDS": "2",
            "GENERATION_RETRY_BUDGET_SECONDS": "3.5"}),
    }
    for billing in BILLINGS:
        # Every address the host has: the bridge (for operators) and one cable from each edge.
        envs[billing] = (billing, "services.billing.server", {
            "BILLING_HOST": "0.0.0.0", "BILLING_PORT": str(BILLING_PORT), "DATABASE_URL": roles["billing"],
            "AUTH_ADDR": services["AUTH_ADDR"]})
    for edge, name in EDGES.items():
        n = edge[1]
        envs[name] = (edge, "edge", {
            "EDGE_HOST": mh.addr(edge), "PORT": str(EDGE_PORT), **services,
            "BILLING_ADDR": f"ipv4:10.251.{n}1.2:{BILLING_PORT},10.251.{n}2.2:{BILLING_PORT}"})
    return envs


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHost]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    remove_leftovers()
    folder = tmp_path_factory.mktemp("multihost")
    (folder / "logs").mkdir()
    topology = Topology(NETWORK)
    postgres = EmbeddedPostgres(folder, PG_PORT, host=str(NETWORK.network_address + HOSTS["db"]))
    try:
        topology.build(HOSTS)
        for edge in EDGES:
            for billing in BILLINGS:
                topology.link(edge, billing, f"10.251.{edge[1]}{billing[1]}.0/24")
        mh = MultiHost(topology, folder, _base_env(folder), {})
        secrets = folder / "db.json"
        done = topology.run("db", [sys.executable, "-m", "tests.multihost.hostside", "start-db", str(folder),
                                   mh.addr("db"), str(PG_PORT), str(NETWORK), str(secrets)], mh.env, REPO_ROOT, 180)
        assert done.returncode == 0, done.stdout + done.stderr
        mh.secrets = json.loads(secrets.read_text())
        for name, (host, module, own) in _process_envs(mh).items():
            topology.start(host, [sys.executable, "-m", module], {**mh.env, **own}, folder / "logs" / f"{name}.log",
                           REPO_ROOT)
        targets = [mh.edge_url(edge) for edge in EDGES] + [f"{mh.addr(b)}:{BILLING_PORT}" for b in BILLINGS]
        mh.on("lg", ["tests.multihost.hostside", "wait-ready", "90", *targets], timeout=150)
        yield mh
    finally:
        topology.stop_all()
        postgres.stop()
        topology.destroy()


def _poll(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _progress(folder: Path) -> list[dict[str, Any]]:
    path = folder / "progress.json"
    return list(json.loads(path.read_text())["calls"]) if path.exists() else []


def _succeeded(folder: Path, edge: str, after: float = 0.0) -> int:
    return sum(1 for c in _progress(folder) if c["edge"] == edge and c["status"] == 200 and c["ended"] > after)


def test_a_cut_link_under_load_loses_and_doubles_nothing(mh: MultiHost) -> None:
    load = mh.folder / "load"
    load.mkdir()
    config = load / "config.json"
    config.touch(mode=0o600)
    config.write_text(json.dumps({
        "edges": {name: mh.edge_url(edge) for edge, name in EDGES.items()}, "admin_key": mh.secrets["admin_key"],
        "users": USERS, "credits": CREDITS, "concurrency": CONCURRENCY, "call_deadline": CALL_DEADLINE,
        "dir": str(load)}))
    generator = mh.topology.start("lg", [sys.executable, "-m", "tests.multihost.loadgen", str(config)], mh.env,
                                  mh.folder / "logs" / "loadgen.log", REPO_ROOT)
    _poll("load on both edges", lambda: all(_succeeded(load, e) >= WARM_CALLS for e in EDGES.values()), 120)
    assert generator.poll() is None

    cut_at = time.time()
    mh.topology.cut("e1", "b1")
    assert not mh.topology.link_is_up("e1", "b1") and mh.topology.link_is_up("e1", "b2")
    before = {b: mh.topology.traffic("e1", b) for b in BILLINGS}
    # e1 was talking to b1 up to the cut (its cable's counters since it was made), so the cut severs a live path.
    assert min(before["b1"]) >= MIN_CABLE_BYTES, before
    time.sleep(CUT_SECONDS)
    after = {b: mh.topology.traffic("e1", b) for b in BILLINGS}
    mh.topology.restore("e1", "b1")
    restored_at = time.time()
    cables = {b: (after[b][0] - before[b][0], after[b][1] - before[b][1]) for b in BILLINGS}
    assert mh.topology.link_is_up("e1", "b1")
    _poll("edge1 serving after the link is back", lambda: _succeeded(load, "edge1", restored_at) >= AFTER_CALLS, 120)

    (load / "stop").touch()
    assert generator.wait(CALL_DEADLINE + 60) == 0, (mh.folder / "logs" / "loadgen.log").read_text()[-3000:]
    results = json.loads((load / "results.json").read_text())
    calls: list[dict[str, Any]] = results["calls"]

    # Every hold resolves: settled by its edge, or expired by a sweeper (17 s lifetime, swept every 0.5 s).
    _poll("every hold resolved",
          lambda: mh.on("db", ["tests.multihost.hostside", "open-holds"]).strip() == "0", 90)
    books = mh.folder / "books.json"
    mh.on("db", ["tests.multihost.hostside", "books", str(books)])
    db = json.loads(books.read_text())
    summary = _check_money(results, db)
    summary.update(_check_the_cut_bit(calls, db["holds"], cut_at, restored_at, cables))
    reconcile = mh.on("db", ["services.billing.cli", "reconcile", "--no-stripe"])
    assert "every balance matches the ledger" in reconcile, reconcile
    (mh.folder / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


def _check_money(results: dict[str, Any], db: dict[str, Any]) -> dict[str, Any]:
    """The books from the database against what the clients saw."""
    calls: list[dict[str, Any]] = results["calls"]
    ours = {u["id"] for u in results["users"]}
    accounts = {a["user_id"]: a for a in db["accounts"] if a["user_id"] in ours}
    assert set(accounts) == ours
    for a in accounts.values():
        # The initial grant the client asked for, less what usage_logs charged, is what is left: no credit
        # lost, none charged twice; the ledger's own usage rows say the same.
        assert Decimal(a["granted"]) == CREDITS, a
        assert Decimal(a["granted"]) - Decimal(a["usage_charged"]) == Decimal(a["available"]), a
        assert Decimal(a["ledger_charged"]) == Decimal(a["usage_charged"]) and Decimal(a["held"]) == 0, a
    assert all(h["outcome"] is not None for h in db["holds"]), [h for h in db["holds"] if h["outcome"] is None]

    holds: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for h in db["holds"]:
        holds[(h["user_id"], h["idempotency_key"])].append(h)
    seen_paid = set()
    for call in calls:
        mine = holds.get((call["user_id"], call["key"]), [])
        posted = [h for h in mine if h["outcome"] == "posted"]
        if call["status"] == 200:
            # Charged exactly once, what the client was told, with one successful usage row.
            assert len(posted) == 1, (call, mine)
            assert Decimal(posted[0]["charged"]) == Decimal(call["charged"]) and posted[0]["successes"] == 1, (
                call, mine)
            seen_paid.add((call["user_id"], call["key"]))
        else:
            assert posted == [], (call, mine)  # a call the client saw fail was not charged
    # Nothing charged that no client saw succeed (a hold of a call that is not in the records included).
    charged_keys = {k for k, hs in holds.items() if any(h["outcome"] == "posted" for h in hs) and k[0] in ours}
    assert charged_keys == seen_paid
    total_seen = sum((Decimal(c["charged"]) for c in calls if c["status"] == 200), Decimal(0))
    total_logged = sum((Decimal(a["usage_charged"]) for a in accounts.values()), Decimal(0))
    assert total_seen == total_logged
    outcomes = Counter(h["outcome"] for h in db["holds"] if h["user_id"] in ours)
    return {"calls": len(calls), "statuses": dict(Counter(str(c["status"]) for c in calls)),
            "attempts": sum(len(c["attempts"]) for c in calls), "holds": dict(outcomes),
            "charged": str(total_logged)}


def _check_the_cut_bit(calls: list[dict[str, Any]], holds: list[dict[str, Any]], cut_at: float,
                       restored_at: float, cables: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The cut bit, seen from outside the services: e1's cable to b1 carried nothing while it was down, e1 kept
    talking to b2 over its other cable (the kernel's byte counters, both ways), and e1 went on serving: at
    least a quarter as many of its calls answered 200 during the cut as e2's, which only holds if the edge
    notices the dead connection within seconds (keepalive pings, common/grpc_target.py).

    Counted, not asserted: failed attempts, the slowest attempt, and the holds of e1's calls that b2 placed
    and posted during the cut (from one billing deadline after it, so a request that reached b1 just before
    it does not count)."""
    def during(a: dict[str, Any]) -> bool:
        return a["began"] < restored_at and a["ended"] > cut_at

    attempts = {name: [a for c in calls if c["edge"] == name for a in c["attempts"] if during(a)]
                for name in EDGES.values()}
    failed = {name: sum(1 for a in tried if a["status"] is None or a["status"] >= 500)
              for name, tried in attempts.items()}
    assert cables["b1"] == (0, 0), cables
    assert min(cables["b2"]) >= MIN_CABLE_BYTES, cables
    served = {name: [a for a in tried if a["status"] == 200 and cut_at < a["ended"] < restored_at]
              for name, tried in attempts.items()}
    # e1 kept serving through b2 while its link to b1 was down: the edge noticed the dead connection within
    # seconds (keepalive pings) and round-robin stopped giving it turns. Without the pings e1 answered 9 calls
    # to e2's 2,667 in one run; with them 931–1,199 to 1,548–1,794. A quarter of e2's is the bar.
    assert len(served["edge1"]) * 4 >= len(served["edge2"]), (len(served["edge1"]), len(served["edge2"]))
    edge1_keys = {(c["user_id"], c["key"]) for c in calls if c["edge"] == "edge1"}
    edge1_holds = [h for h in holds if (h["user_id"], h["idempotency_key"]) in edge1_keys]
    cut = (cut_at + float(HOLD_SETTINGS["EDGE_RPC_TIMEOUT_SECONDS"]), restored_at)
    reserved = [h for h in edge1_holds if cut[0] < h["reserved_at"] < cut[1]]
    posted = [h for h in edge1_holds if h["outcome"] == "posted" and cut[0] < h["resolved_at"] < cut[1]]
    return {"cut_seconds": round(restored_at - cut_at, 2),
            "e1_cable_bytes_received_sent_during_cut": cables,
            "attempts_during_cut": {k: len(v) for k, v in attempts.items()},
            "failed_attempts_during_cut": failed, "answered_200_during_cut": {k: len(v) for k, v in served.items()},
            "slowest_attempt_during_cut_seconds": {k: round(max((a["ended"] - a["began"] for a in v), default=0), 2)
                                                   for k, v in attempts.items()},
            "edge1_holds_reserved_by_b2_during_cut": len(reserved), "edge1_holds_posted_by_b2_during_cut": len(posted),
            "retried_calls": dict(Counter(c["edge"] for c in calls if len(c["attempts"]) > 1))}
