"""How long `fsg backup` and `fsg restore` take, and how big a backup is, for a database of a given size:

    .venv/bin/python -m bench.backup [--users N] [--calls M] [--runs K]

Starts the whole stack (tests/stack.py) in a temporary directory, fills it the way it fills in use: N users
by `fsg-billing import` (each created with a grant: a ledger row), then M metered `generate-structure` calls
through the edge (a hold, its resolution, a ledger row, a usage row and a project with its parts each). Then,
K times, times with a wall clock, as processes of their own (Python start-up included):

- `fsg backup` of the running stack's database (DATABASE_URL);
- `fsg restore` of that file into a new, empty database of the same server.

Each restore is checked: every table equal, row for row, to the source (the round-trip test's comparison).
Prints the median and range and writes bench/results/backup.json. Speed is measured here, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from common.settings import REPO_ROOT
from tests.devstack.test_backup import table_digests
from tests.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - started, done.stdout.strip()


def fill(stack: Stack, users: int, calls: int) -> None:
    tag = uuid.uuid4().hex[:8]
    rows = ["username,email,initial_credits,notes"] + [f"u{tag}_{i},u{tag}_{i}@example.test,100.5,"
                                                       for i in range(users)]
    path = stack.data_dir / "users.csv"
    path.write_text("\n".join(rows) + "\n")
    _timed(stack.env, "services.billing.cli", "import", str(path))
    with httpx.Client(base_url=stack.edge_url, headers={"X-API-Key": stack.admin_key}, timeout=60) as edge:
        for i in range(calls):
            answer = edge.post("/api/generate-structure", json={"storyInput": {"title": f"Film {i}"},
                                                                "template": "three-act"})
            if answer.status_code != 200:
                raise SystemExit(f"generate-structure: {answer.status_code} {answer.text}")


async def _create_database(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsg-bench-backup-") as folder:
        stack = Stack(Path(folder)).start({"BILLING_DEFAULT_REQUESTS_PER_MINUTE": "0"})
        try:
            fill(stack, options.users, options.calls)
            source = asyncio.run(table_digests(stack.dsn))
            operator = {k: v for k, v in os.environ.items() if not k.startswith("FSG_")}
            backups, restores, sizes = [], [], []
            for run in range(options.runs):
                took, file = _timed({**operator, "DATABASE_URL": stack.dsn}, "devstack.cli", "backup", "--dir",
                                    str(Path(folder) / "backups"), "--keep", "1")
                backups.append(took)
                sizes.append(Path(file).stat().st_size)
                target = asyncio.run(_create_database(stack.dsn, f"restored{run}"))
                took, _ = _timed({**operator, "DATABASE_URL": target}, "devstack.cli", "restore", file)
                restores.append(took)
                if asyncio.run(table_digests(target)) != source:
                    raise SystemExit("a restored database differs from its source")
            rows = {table: count for table, (count, _digest) in source.items()}
        finally:
            stack.stop()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "users": options.users, "calls": options.calls,
        "rows": rows, "backup_bytes": statistics.median(sizes),
        "backup_seconds": {"median": statistics.median(backups), "min": min(backups), "max": max(backups)},
        "restore_seconds": {"median": statistics.median(restores), "min": min(restores), "max": max(restores)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backup.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
