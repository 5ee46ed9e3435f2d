"""`make bench`: metered generation calls through the edge vs the same Messages API calls straight at the
simulator, at several concurrencies, with per-process CPU per request. See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2

from bench import load
from bench.harness import BenchStack, CpuMeter, Profiler, py_spy
from services.generation import outputs, prompts
from services.generation.claude import read_message
from services.generation.kinds import KINDS
from services.generation.pricing import PriceTable
from services.generation.project import Project

RESULTS = Path(__file__).resolve().parent / "results"
FULL_COUNTS = {1: 300, 16: 1000, 64: 1000}
QUICK_COUNTS = {1: 30, 16: 100, 64: 128}
ACT = "setup"
TARGET_RATIO_AT_64 = 0.40
TARGET_P50_DELTA_AT_1_MS = 4.0
CREDITS = 10_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels (default 1,16,64)")
    parser.add_argument("--requests", type=int, help="measured requests per level (default 300 at c=1, 1000 above)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests per level")
    parser.add_argument("--rounds", type=int, default=3,
                        help="edge-then-direct pairs per level, each a share of the requests (default 3; fewer "
                             "when a share would hold fewer requests than the concurrency)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per level and path (default max(20, 2×c))")
    parser.add_argument("--scenes-per-project", type=int, default=16,
                        help="each generate-scene appends a scene and the next prompt carries every scene of the "
                             "act, so requests are spread over enough projects that none exceeds this many scenes")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the stack's processes, e.g. EDGE_KEY_CACHE_SECONDS=30")
    parser.add_argument("--tls", action="store_true",
                        help="mutual TLS between the edge and the services, as `make run` runs by default (the "
                             "edge itself stays plain HTTP, as there)")
    parser.add_argument("--profile", action="store_true",
                        help="after measuring, repeat the edge run at --profile-at levels under py-spy")
    parser.add_argument("--profile-at", default="1,64")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.profile_levels = {int(c) for c in args.profile_at.split(",") if c.strip()}
    args.overrides = dict(item.split("=", 1) for item in args.env)
    return args


def count_for(args: argparse.Namespace, concurrency: int) -> int:
    if args.requests:
        return args.requests
    table = QUICK_COUNTS if args.quick else FULL_COUNTS
    return table.get(concurrency, max(table.values()))


def warmup_for(args: argparse.Namespace, concurrency: int) -> int:
    if args.warmup is not None:
        return args.warmup
    return max(10 if args.quick else 20, 2 * concurrency)


# -- the two paths ---------------------------------------------------------------------------------------

class Edge:
    """generate-scene through the REST edge: auth → Prepare → Reserve → Execute (Claude) → Commit."""

    def __init__(self, base_url: str, api_key: str, concurrency: int, paths: list[str]) -> None:
        # The same HTTP client as the direct path and the generation service: the SDK's aiohttp-backed
        # httpx2 client, sized the same way.
        self.client = anthropic.DefaultAioHttpClient(
            base_url=base_url, headers={"X-API-Key": api_key}, timeout=60,
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.paths = paths
        self.input_tokens: list[int] = []
        self.error_samples: list[str] = []
        #: Each call's steps as the edge timed them (its Server-Timing header), ms.
        self.timings: list[dict[str, float]] = []

    async def call(self, index: int) -> str | None:
        path = self.paths[index % len(self.paths)]
        response = await self.client.post(f"/api/generate-scene/{path}/{ACT}")
        if response.status_code != 200:
            if len(self.error_samples) < 3:
                self.error_samples.append(f"{response.status_code} {response.text[:300]}")
            return f"HTTP {response.status_code}"
        self.input_tokens.append(response.json()["usage"]["input_tokens"])
        self.timings.append(server_timing(response.headers.get("server-timing", "")))
        return None

    async def close(self) -> None:
        await self.client.aclose()


def server_timing(header: str) -> dict[str, float]:
    """`prepare;dur=1.20, reserve;dur=0.80` → {"prepare": 1.2, "reserve": 0.8}."""
    steps: dict[str, float] = {}
    for item in header.split(","):
        name, _, duration = item.strip().partition(";dur=")
        if name and duration:
            steps[name] = float(duration)
    return steps


def timeline(samples: list[dict[str, float]]) -> dict[str, float]:
    """The median of each step of the edge's calls (Server-Timing), and what the steps leave for the edge."""
    if not samples:
        return {}
    steps = [name for name in samples[0] if all(name in s for s in samples)]
    medians = {name: round(statistics.median(s[name] for s in samples), 2) for name in steps}
    if "total" in medians:
        inside = statistics.median(s["total"] - sum(v for k, v in s.items() if k != "total") for s in samples)
        medians["edge itself"] = round(inside, 2)
    return medians


class Direct:
    """The same Messages API requests the generation service sends, straight at the simulator with the
    anthropic SDK configured and called as the generation service does (aiohttp transport, no OpenTelemetry
    spans, the raw response read with `claude.read_message`)."""

    def __init__(self, base_url: str, concurrency: int, requests: list[dict[str, Any]]) -> None:
        http_client = anthropic.DefaultAioHttpClient(
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency), timeout=60,
        )
        self.client = anthropic.AsyncAnthropic(
            api_key="simulator", base_url=base_url, max_retries=0, timeout=60, http_client=http_client,
            open_telemetry=False,
        )
        self.requests = requests
        self.input_tokens: list[int] = []
        self.error_samples: list[str] = []

    async def call(self, index: int) -> str | None:
        request = self.requests[index]
        try:
            raw = await self.client.messages.with_raw_response.create(**request)
            reply = read_message(json.loads(await raw.read()), raw.request_id, request["tools"][0])
        except anthropic.APIStatusError as exc:
            if len(self.error_samples) < 3:
                self.error_samples.append(f"{exc.status_code} {exc.message[:300]}")
            return f"HTTP {exc.status_code}"
        if reply.tool_input is None:
            return "no tool_use"
        self.input_tokens.append(reply.input_tokens)
        return None

    async def close(self) -> None:
        await self.client.close()


def scene_requests(docs: list[dict[str, Any]], total: int, model: str) -> list[dict[str, Any]]:
    """Request i went to project i % K when that project held i // K scenes of the act; rebuild exactly
    that Messages request (the scene kind's prompt and tool, as Planner.plan builds them) from the final
    documents."""
    kind = KINDS["scene"]
    assert kind.tool is not None
    tool = outputs.tool(kind.tool.name, kind.tool.description, outputs.Scene)
    out = []
    for i in range(total):
        project = Project.model_validate(docs[i % len(docs)])
        scenes = project.scenes.get(ACT, [])
        then = project.model_copy(update={"scenes": {**project.scenes, ACT: scenes[: i // len(docs)]}})
        out.append({
            "model": model, "max_tokens": kind.default_max_tokens, "system": prompts.SYSTEM,
            "messages": [{"role": "user", "content": prompts.scene(then, ACT)}],
            "tools": [tool], "tool_choice": {"type": "tool", "name": tool["name"]},
        })
    return out


# -- one concurrency level --------------------------------------------------------------------------------

async def create_projects(http: httpx.AsyncClient, count: int) -> list[str]:
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with sem:
            response = await http.post("/api/generate-structure", json={
                "storyInput": {"title": f"Bench story {i}", "logline": "A retired safecracker takes one more job"},
                "template": "three-act",
            })
        if response.status_code != 200:
            raise RuntimeError(f"generate-structure failed: {response.status_code} {response.text[:300]}")
        return str(response.json()["projectPath"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def per_request_ms(cpu: dict[str, float], ok: int) -> dict[str, float]:
    if not ok:
        return {}
    out = {name: round(1000 * seconds / ok, 3) for name, seconds in cpu.items()}
    out["total"] = round(sum(v for k, v in out.items() if k != "other"), 3)
    return out


async def run_edge(stack: BenchStack, key: str, concurrency: int, paths: list[str], warmup: int,
                   requests: int, profiler: Profiler | None = None) -> tuple[load.RunResult, Edge, dict[str, Any]]:
    edge = Edge(stack.edge_url, key, concurrency, paths)
    meter = CpuMeter(stack.pids())
    try:
        await load.run(edge.call, warmup, concurrency, 0)
        edge.input_tokens.clear()
        if profiler:
            profiler.start()
        meter.start()
        result = await load.run(edge.call, requests, concurrency, warmup)
        cpu = meter.stop()
        profile = profiler.stop() if profiler else {}
    finally:
        await edge.close()
    return result, edge, {"cpu_s": cpu, "profile": profile}


@dataclass
class Pair:
    """One round: the edge run on fresh projects, then the direct run of the same requests right after."""

    edge: load.RunResult
    direct: load.RunResult
    edge_cpu: dict[str, float]
    direct_cpu: dict[str, float]
    edge_client: Edge
    direct_client: Direct
    projects: int
    max_scenes: int
    batches: dict[str, tuple[float, float]]


async def run_pair(stack: BenchStack, http: httpx.AsyncClient, key: str, model: str, concurrency: int,
                   warmup: int, requests: int, args: argparse.Namespace) -> Pair:
    total = warmup + requests
    n_projects = math.ceil(total / args.scenes_per_project)
    paths = await create_projects(http, n_projects)
    batches_before = await batch_counts(http)
    edge_result, edge, edge_extra = await run_edge(stack, key, concurrency, paths, warmup, requests)
    batches = batch_delta(batches_before, await batch_counts(http))

    docs = []
    for path in paths:
        response = await http.get(f"/api/projects/{path}")
        response.raise_for_status()
        docs.append(response.json())
    direct = Direct(f"http://127.0.0.1:{stack.ports['simulator']}", concurrency,
                    scene_requests(docs, total, model))
    meter = CpuMeter(stack.pids())
    try:
        await load.run(direct.call, warmup, concurrency, 0)
        direct.input_tokens.clear()
        meter.start()
        direct_result = await load.run(direct.call, requests, concurrency, warmup)
        direct_cpu = meter.stop()
    finally:
        await direct.close()
    return Pair(edge_result, direct_result, edge_extra["cpu_s"], direct_cpu, edge, direct, n_projects,
                math.ceil(total / n_projects), batches)


def _ratio(edge: load.RunResult, direct: load.RunResult) -> float | None:
    return round(edge.throughput / direct.throughput, 3) if direct.throughput else None


def _sum_cpu(parts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for name, seconds in part.items():
            out[name] = out.get(name, 0.0) + seconds
    return out


async def run_level(stack: BenchStack, http: httpx.AsyncClient, key: str, model: str, concurrency: int,
                    args: argparse.Namespace) -> dict[str, Any]:
    """`--rounds` edge-then-direct pairs, each a share of the requests, added up. This VM's speed drifts by
    up to 2× within minutes; pairing each edge run with a direct run seconds later keeps the ratio honest."""
    requests = count_for(args, concurrency)
    warmup = warmup_for(args, concurrency)
    rounds = max(1, min(args.rounds, requests // concurrency))  # each round keeps all c workers busy
    shares = [requests // rounds + (1 if i < requests % rounds else 0) for i in range(rounds)]

    pairs = [await run_pair(stack, http, key, model, concurrency, warmup, share, args) for share in shares]

    edge_result = load.combine([p.edge for p in pairs])
    direct_result = load.combine([p.direct for p in pairs])
    edge_cpu, direct_cpu = _sum_cpu([p.edge_cpu for p in pairs]), _sum_cpu([p.direct_cpu for p in pairs])
    edge_tokens = [t for p in pairs for t in p.edge_client.input_tokens]
    direct_tokens = [t for p in pairs for t in p.direct_client.input_tokens]
    level: dict[str, Any] = {
        "concurrency": concurrency,
        "warmup": warmup,
        "rounds": rounds,
        "projects": sum(p.projects for p in pairs),
        "max_scenes_per_project": max(p.max_scenes for p in pairs),
        "edge": edge_result.summary(),
        "direct": direct_result.summary(),
        "edge_over_direct_throughput": _ratio(edge_result, direct_result),
        "edge_over_direct_by_round": [_ratio(p.edge, p.direct) for p in pairs],
        "p50_delta_ms": round(edge_result.percentile(50) - direct_result.percentile(50), 2),
        "p99_delta_ms": round(edge_result.percentile(99) - direct_result.percentile(99), 2),
        "mean_input_tokens": {"edge": _mean(edge_tokens), "direct": _mean(direct_tokens)},
        "cpu_ms_per_request": {"edge": per_request_ms(edge_cpu, edge_result.ok),
                               "direct": per_request_ms(direct_cpu, direct_result.ok)},
        "cpu_utilisation_cores": {"edge": _cores(edge_cpu, edge_result.elapsed_s),
                                  "direct": _cores(direct_cpu, direct_result.elapsed_s)},
        "error_samples": {"edge": [e for p in pairs for e in p.edge_client.error_samples][:3],
                          "direct": [e for p in pairs for e in p.direct_client.error_samples][:3]},
        "mean_batch_items": mean_batch_items([p.batches for p in pairs]),
        "edge_timeline_ms": timeline([t for p in pairs for t in p.edge_client.timings]),
    }
    if args.profile and concurrency in args.profile_levels:
        paths = await create_projects(http, math.ceil((warmup + requests) / args.scenes_per_project))
        label = f"c{concurrency}"
        profiler = Profiler(stack.pids(), args.output.parent / "profiles", label)
        profiled, _, extra = await run_edge(stack, key, concurrency, paths, warmup, requests, profiler)
        level["profiled_edge"] = {**profiled.summary(), "profile": extra["profile"],
                                  "cpu_ms_per_request": per_request_ms(extra["cpu_s"], profiled.ok),
                                  "raw_profiles": str(profiler.out_dir)}
    return level


async def batch_counts(http: httpx.AsyncClient) -> dict[str, tuple[float, float]]:
    """(items, batches) so far per batched call, from the edge's /metrics (fsg_service_batch_items)."""
    text = (await http.get("/metrics")).text
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, index in (("_sum", 0), ("_count", 1)):
            prefix = f"fsg_service_batch_items{suffix}{{call=\""
            if line.startswith(prefix):
                call = line[len(prefix):].split('"', 1)[0]
                found.setdefault(call, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {call: (v[0], v[1]) for call, v in found.items()}


def batch_delta(before: dict[str, tuple[float, float]],
                after: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """(items, batches) per batched call between two readings of batch_counts."""
    return {call: (items - before.get(call, (0.0, 0.0))[0], batches - before.get(call, (0.0, 0.0))[1])
            for call, (items, batches) in after.items()}


def mean_batch_items(deltas: list[dict[str, tuple[float, float]]]) -> dict[str, float]:
    """Mean calls per batch RPC over the edge runs (empty when batching is off)."""
    totals: dict[str, list[float]] = {}
    for delta in deltas:
        for call, (items, batches) in delta.items():
            total = totals.setdefault(call, [0.0, 0.0])
            total[0] += items
            total[1] += batches
    return {call: round(items / batches, 2) for call, (items, batches) in totals.items() if batches}


def _cores(cpu: dict[str, float], elapsed: float) -> dict[str, float]:
    """Cores kept busy by the benchmark's processes, and by everything else on the machine meanwhile."""
    ours = sum(v for k, v in cpu.items() if k != "other")
    return {"ours": round(ours / elapsed, 2), "other": round(cpu.get("other", 0.0) / elapsed, 2)}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


# -- report ---------------------------------------------------------------------------------------------

def print_level(level: dict[str, Any], out: Callable[[str], None] = print) -> None:
    c = level["concurrency"]
    rounds = level.get("rounds", 1)
    each = f"in {rounds} rounds, each" if rounds > 1 else ""
    out(f"\nconcurrency {c}: {level['edge']['requests']} requests {each} after {level['warmup']} warm-up, "
        f"{level['projects']} projects (≤{level['max_scenes_per_project']} scenes each)")
    out(f"  {'path':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'in tok':>9}")
    for path in ("edge", "direct"):
        s = level[path]
        out(f"  {path:<8}{s['throughput_rps']:>9.1f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['errors']:>8}"
            f"{level['mean_input_tokens'][path] or 0:>9.0f}")
        if s["errors"]:
            out(f"    errors: {s['error_kinds']} e.g. {level['error_samples'][path][:1]}")
    ratio = level["edge_over_direct_throughput"]
    by_round = level.get("edge_over_direct_by_round") or []
    rounds = f" (rounds: {', '.join(f'{r:.3f}' for r in by_round if r is not None)})" if len(by_round) > 1 else ""
    out(f"  edge/direct throughput {ratio:.3f}{rounds}   p50 edge−direct {level['p50_delta_ms']:+.2f} ms   "
        f"p99 edge−direct {level['p99_delta_ms']:+.2f} ms")
    if level.get("mean_batch_items"):
        out("  mean calls per batch RPC: " + "  ".join(f"{k} {v:.1f}" for k, v in level["mean_batch_items"].items()))
    if level.get("edge_timeline_ms"):
        out("  edge timeline, median ms (Server-Timing): "
            + "  ".join(f"{k} {v:.2f}" for k, v in level["edge_timeline_ms"].items()))
    for path in ("edge", "direct"):
        cpu = level["cpu_ms_per_request"][path]
        parts = "  ".join(f"{k} {v:.2f}" for k, v in cpu.items()
                          if k not in ("total", "other") and (v >= 0.005 or path == "edge"))
        cores = level["cpu_utilisation_cores"][path]
        out(f"  CPU ms/request ({path}): {parts}  | total {cpu.get('total', 0):.2f}  "
            f"({cores['ours']:.2f} cores busy; other processes on the machine: {cores['other']:.2f} cores)")


def targets(levels: list[dict[str, Any]]) -> list[str]:
    lines = []
    by_c = {lv["concurrency"]: lv for lv in levels}
    if 64 in by_c:
        ratio = by_c[64]["edge_over_direct_throughput"]
        ok = ratio is not None and ratio >= TARGET_RATIO_AT_64
        lines.append(f"target c=64 edge ≥ {TARGET_RATIO_AT_64:.0%} of direct throughput: "
                     f"{ratio:.1%} → {'MET' if ok else 'MISSED'}")
    if 1 in by_c:
        delta = by_c[1]["p50_delta_ms"]
        ok = delta <= TARGET_P50_DELTA_AT_1_MS
        lines.append(f"target c=1 edge adds ≤ {TARGET_P50_DELTA_AT_1_MS:g} ms at p50: {delta:+.2f} ms → "
                     f"{'MET' if ok else 'MISSED'}")
    return lines


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "anthropic": anthropic.__version__,
    }


# -- main -----------------------------------------------------------------------------------------------

async def bench(stack: BenchStack, args: argparse.Namespace) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as admin:
        response = await admin.post("/api/admin/create-user", headers={"X-API-Key": stack.admin_key}, json={
            "username": "bench", "email": "bench@example.test", "initialCredits": CREDITS,
        })
        if response.status_code != 201:
            raise RuntimeError(f"create-user failed: {response.status_code} {response.text[:300]}")
        key = response.json()["user"]["api_key"]
        # Measure the pipeline, not the rate limiter: the bench user's limits are off (0 = no limit).
        response = await admin.put("/api/admin/users/bench/limits", headers={"X-API-Key": stack.admin_key},
                                   json={"requests_per_minute": 0, "max_concurrent": 0})
        if response.status_code != 200:
            raise RuntimeError(f"setting limits failed: {response.status_code} {response.text[:300]}")
    model = PriceTable.load().resolve("").id
    levels = []
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60, headers={"X-API-Key": key}) as http:
        for concurrency in args.levels:
            level = await run_level(stack, http, key, model, concurrency, args)
            print_level(level)
            levels.append(level)
    return levels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile and py_spy() is None:
        print("--profile needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="fsg-bench-"))
    stack = BenchStack(data_dir, overrides=args.overrides, tls=args.tls, edge_https=False)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    try:
        print(f"starting the stack in {data_dir} …", flush=True)
        stack.start()
        print(f"stack up in {time.monotonic() - started:.1f}s: edge {stack.edge_url}, "
              f"simulator :{stack.ports['simulator']}", flush=True)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            levels = runner.run(bench(stack, args))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the stack", file=sys.stderr)
        return 130
    except Exception as exc:
        # A Ctrl-C in the terminal reaches the stack's processes too; they stop before we notice it.
        deadline = time.monotonic() + 3
        while not (dead := {n: p.returncode for n, p in stack.processes.items() if p.poll() is not None}):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        print(f"\naborted: stack process(es) exited {dead} (Ctrl-C?): {exc!r}; stopping the stack",
              file=sys.stderr)
        return 130
    finally:
        _stop(stack)
        shutil.rmtree(data_dir, ignore_errors=True)

    print()
    for line in targets(levels):
        print(line)
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"quick": args.quick, "internal_tls": args.tls, "scenes_per_project": args.scenes_per_project,
                     "env": {**_bench_env(), **args.overrides}},
        "levels": levels,
        "targets": targets(levels),
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.output} ({report['wall_s']}s)")
    return 0


def _bench_env() -> dict[str, str]:
    from bench.harness import BENCH_ENV

    return dict(BENCH_ENV)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _stop(stack: BenchStack) -> None:
    """Stop every process and PostgreSQL, even after a Ctrl-C that already reached them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave PostgreSQL running
    try:
        stack.stop()
    except Exception as exc:
        print(f"stopping the stack: {exc!r}", file=sys.stderr)
        for proc in stack.processes.values():
            if proc.poll() is None:
                proc.kill()
        if stack.postgres is not None:
            try:
                stack.postgres.stop()
            except Exception as pg_exc:
                print(f"stopping PostgreSQL: {pg_exc!r}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
