"""The stack under test (tests.stack.Stack with benchmark settings), per-process CPU accounting and
optional py-spy profiling of each process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from common.settings import CommonSettings
from tests.stack import Stack

#: Benchmark settings on top of the test stack's: a realistic Claude timeout, no artificial latency or
#: faults in the simulator, the sweeper at its production period, production log level and pool size.
BENCH_ENV = {
    "GENERATION_ANTHROPIC_TIMEOUT_SECONDS": "30",
    "GENERATION_RETRY_MAX_ATTEMPTS": "1",  # no retries (the simulator has no faults here)
    "GENERATION_RETRY_BUDGET_SECONDS": "30",  # else the test stack's short budget would cut the timeout
    "SIM_LATENCY_MS": "0",
    "SIM_FAULT": "",
    "SIM_LOG_LEVEL": "warning",
    "BILLING_SWEEP_INTERVAL_SECONDS": "5",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "json",  # production's (the test stack's default is make run's console lines)
    "DB_POOL_MAX": str(CommonSettings.model_fields["db_pool_max"].default),  # the test stack uses 20
}

SERVICES = ("edge", "auth", "billing", "generation", "simulator")


@dataclass
class BenchStack(Stack):
    overrides: dict[str, str] = field(default_factory=dict)

    def start_process(self, name: str, command: list[str], logs: Path | None = None,
                      env: dict[str, str] | None = None) -> None:
        # Stack.start() fills self.env with test settings first; ours win.
        self.env.update(BENCH_ENV)
        self.env.update(self.overrides)
        super().start_process(name, command, logs, env)

    def pids(self) -> dict[str, int]:
        pids = {name: proc.pid for name, proc in self.processes.items()}
        pg = self.postgres_pid()
        if pg:
            pids["postgres"] = pg
        return pids

    def postgres_pid(self) -> int | None:
        if self.postgres is None:
            return None
        pidfile = self.postgres.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


def _tree_cpu(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process and (unless told not to) all its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if children else [root]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """CPU seconds used by each process (tree) between `start()` and `stop()`; `bench` is this process
    alone (the load generator: the stack's processes are its children and are counted on their own)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}
        self._before: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        snap = {name: _tree_cpu(pid, children=name != "bench") for name, pid in self.pids.items()}
        times = psutil.cpu_times()
        snap["_machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return snap

    def start(self) -> None:
        self._before = self.snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per process, plus `other`: what the rest of the machine burnt meanwhile (other
        users' processes, the kernel): a large `other` means the figures are contaminated."""
        after = self.snapshot()
        used = {name: max(0.0, after[name] - self._before.get(name, 0.0)) for name in self.pids}
        machine = after["_machine"] - self._before["_machine"]
        used["other"] = max(0.0, machine - sum(used.values()))
        return used


# -- py-spy --------------------------------------------------------------------------------------------

def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record --format raw` (collapsed stacks) on each Python process while a phase runs."""

    def __init__(self, pids: dict[str, int], out_dir: Path, label: str, rate: int = 200) -> None:
        self.exe = py_spy()
        self.pids = {n: p for n, p in pids.items() if n in SERVICES}
        self.out_dir = out_dir
        self.label = label
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def path(self, name: str) -> Path:
        return self.out_dir / f"{self.label}-{name}.txt"

    def start(self) -> None:
        if self.exe is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.procs[name] = subprocess.Popen(
                [self.exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(self.rate),
                 "--nonblocking", "--subprocesses", "--output", str(self.path(name))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )

    def stop(self) -> dict[str, dict[str, object]]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        report: dict[str, dict[str, object]] = {}
        for name, proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = self.path(name)
            if path.exists():
                report[name] = summarise(path)
            else:
                report[name] = {"error": err.decode(errors="replace")[-500:]}
        return report


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_name(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module path from site-packages or repo)`, line dropped."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})"


def summarise(path: Path, top: int = 15) -> dict[str, object]:
    """Self time per function (leaf frames) and inclusive time per function, from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}
