"""How long a 10,000-row bulk import takes, end to end, as an operator and an admin would run it:

    make bench-bulk            (or .venv/bin/python -m bench.bulk_import [--rows N] [--runs K])

Starts the whole stack (tests/stack.py: embedded PostgreSQL, auth, billing, generation, edge) in a temporary
directory, then, for each run, with a fresh file of N new users (initial credits 100.5 each, a note on every
other row), times with a wall clock:

- `fsg-billing import FILE --dry-run` (a process of its own, Python start-up included);
- `fsg-billing import FILE`: every user created and granted;
- the same command again: every row `exists`, nothing granted;
- `POST /api/admin/import` with another fresh file of N users (the edge's path);
- `GET /api/admin/export/users.csv` (every user in the database by then).

Each import's report is checked (N created, then N exist; the credits granted add up), and `fsg-billing
reconcile` must be clean at the end. Prints the median and range over the runs and writes
bench/results/bulk_import.json. Speed is measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
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
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from common.settings import REPO_ROOT
from tests.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"
CREDITS = Decimal("100.5")


def csv_file(rows: int) -> bytes:
    tag = uuid.uuid4().hex[:8]
    lines = ["username,email,initial_credits,notes"]
    lines += [f"u{tag}_{i},u{tag}_{i}@example.test,{CREDITS},{'cohort ' + str(i % 7) if i % 2 else ''}"
              for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


def cli(stack: Stack, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "services.billing.cli", *args], cwd=REPO_ROOT, env=stack.env,
                            capture_output=True, text=True, timeout=600, check=False)
    return time.perf_counter() - started, result


def check(report: dict[str, Any], rows: int, outcome: str, granted: Decimal) -> None:
    summary = report["summary"]
    if summary[outcome] != rows or Decimal(str(summary["credits_granted"])) != granted or not report["complete"]:
        raise SystemExit(f"unexpected report: {summary}")


def one_run(stack: Stack, http: httpx.Client, rows: int, workdir: Path) -> dict[str, float]:
    path = workdir / f"users-{uuid.uuid4().hex[:6]}.csv"
    path.write_bytes(csv_file(rows))
    times: dict[str, float] = {}
    for name, args, outcome, granted in (
        ("cli dry run", ("--dry-run",), "created", CREDITS * rows),
        ("cli import", (), "created", CREDITS * rows),
        ("cli rerun (all exist)", (), "exists", Decimal(0)),
    ):
        seconds, result = cli(stack, "import", str(path), "--json", *args)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")
        check(json.loads(result.stdout), rows, outcome, granted)
        times[name] = seconds
    data = csv_file(rows)
    started = time.perf_counter()
    response = http.post("/api/admin/import", content=data, headers={"Content-Type": "text/csv"})
    times["REST import"] = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"REST import failed: {response.status_code} {response.text[:2000]}")
    check(response.json(), rows, "created", CREDITS * rows)
    started = time.perf_counter()
    exported = http.get("/api/admin/export/users.csv")
    times["REST export users.csv"] = time.perf_counter() - started
    if exported.status_code != 200:
        raise SystemExit(f"export failed: {exported.status_code}")
    times["users exported"] = exported.text.count("\r\n") - 1
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fsg-bulk-bench-") as tmp:
        stack = Stack(Path(tmp)).start()
        try:
            with httpx.Client(base_url=stack.edge_url, timeout=600, headers={"X-API-Key": stack.admin_key}) as http:
                runs = [one_run(stack, http, args.rows, Path(tmp)) for _ in range(args.runs)]
            reconcile = subprocess.run([sys.executable, "-m", "services.billing.cli", "reconcile"], cwd=REPO_ROOT,
                                       env=stack.env, capture_output=True, text=True, timeout=300, check=False)
        finally:
            stack.stop()
    if reconcile.returncode != 0:
        raise SystemExit(f"reconcile is not clean after the imports:\n{reconcile.stdout}{reconcile.stderr}")
    print(f"{args.rows} rows per file, {args.runs} runs on {os.cpu_count()} CPU(s); wall seconds, median (range)")
    summary: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        values = [run[name] for run in runs]
        summary[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        if name == "users exported":
            print(f"  {name:24} {', '.join(str(int(v)) for v in values)}")
        else:
            print(f"  {name:24} {statistics.median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})")
    print("reconcile: clean")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk_import.json").write_text(json.dumps({
        "rows": args.rows, "runs": runs, "summary": summary, "when": datetime.now(UTC).isoformat(),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "cpu": platform.processor()},
    }, indent=2))


if __name__ == "__main__":
    main()
