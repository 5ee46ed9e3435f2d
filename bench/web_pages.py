"""What the web app's pages cost: server time per page (each page is several REST-route calls into the
services), measured sequentially on an idle stack of its own, after a warm-up.

    .venv/bin/python -m bench.web_pages

A signed-in writer with one finished three-act project (structure, plot points and scenes for every act, one
scene's dialogue) and a few dozen calls in the usage log; an admin for the admin pages. Each page is fetched
ROUNDS times; p50 and p95 of the whole HTTP round trip, in milliseconds.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import BenchStack

ROUNDS = 100


def _session(base: str, key: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=60, headers={"Accept": "text/html"})
    signed = http.post("/app/sign-in", data={"api_key": key}, headers={"Origin": base})
    assert signed.status_code == 303, signed.text
    return http


def _time(http: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[float, float]:
    samples = []
    for _ in range(ROUNDS + 5):
        began = time.perf_counter()
        answer = http.request(method, path, **kwargs)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    samples = sorted(samples[5:])
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        stack = BenchStack(Path(tmp))
        stack.start()
        try:
            base = stack.edge_url
            with httpx.Client(base_url=base, timeout=60) as api:
                admin = {"X-API-Key": stack.admin_key}
                made = api.post("/api/admin/create-user", headers=admin, json={
                    "username": "benchwriter", "email": "bench@example.test", "initialCredits": 1000})
                key = made.json()["user"]["api_key"]
                user = {"X-API-Key": key}
                path = api.post("/api/generate-structure", headers=user, json={
                    "storyInput": {"title": "Bench", "logline": "Pages, timed"}, "template": "three-act"}
                ).json()["projectPath"]
                for act in ("setup", "confrontation", "resolution"):
                    api.post(f"/api/generate-plot-points-for-act/{path}/{act}", headers=user, json={})
                    api.post("/api/generate-scenes", headers=user, json={"projectPath": path, "actKey": act})
                api.post("/api/generate-dialogue", headers=user,
                         json={"projectPath": path, "structureKey": "setup", "sceneIndex": 0})
            writer, operator = _session(base, key), _session(base, stack.admin_key)
            page = writer.get(f"/app/projects/{path}").text
            csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
            assert csrf
            rows = [
                ("GET /app (studio)", writer, "GET", "/app", {}),
                ("GET /app/projects/{path} (project + screenplay)", writer, "GET", f"/app/projects/{path}", {}),
                ("POST /app/quote (a step's price)", writer, "POST", "/app/quote",
                 {"data": {"kind": "dialogue", "project": path, "act": "setup", "scene": "1",
                           "csrf_token": csrf.group(1)}, "headers": {"Origin": base}}),
                ("GET /app/dashboard", writer, "GET", "/app/dashboard", {}),
                ("GET /app/admin (users)", operator, "GET", "/app/admin", {}),
                ("GET /app/admin/users/benchwriter", operator, "GET", "/app/admin/users/benchwriter", {}),
                ("GET /app/admin/system", operator, "GET", "/app/admin/system", {}),
            ]
            print(f"| page | p50 ms | p95 ms |  ({ROUNDS} sequential requests each)")
            print("| --- | --- | --- |")
            for name, http, method, url, kwargs in rows:
                p50, p95 = _time(http, method, url, **kwargs)
                print(f"| {name} | {p50:.1f} | {p95:.1f} |")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
