"""The multi-host test's load generator, a host of its own: `python -m tests.multihost.loadgen CONFIG`.

It behaves as real clients would: it creates its users through the admin API, then keeps `concurrency`
metered calls in flight against both edges (worker n always uses edge n mod 2, users in turn), each call with
its own `Idempotency-Key`, retried with that key on a 5xx, a 409 or 429 (after `Retry-After`) or a lost
connection, until it gets an answer that ends it or `call_deadline` passes. It stops starting calls when
the file `stop` appears in its directory, finishes the calls it has, and writes every call, attempt by
attempt, to `results.json`; `progress.json` says how far it got meanwhile (for the test to poll).

CONFIG is a JSON file: {"edges": {name: url}, "admin_key", "users", "credits", "concurrency",
"call_deadline", "dir"}.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

BODY = {"storyInput": {"title": "Across the Wire", "logline": "Two hosts, one ledger"}, "template": "three-act"}
#: Statuses a client retries with the same key: in progress (409), rate limited (429), the system's 5xx.
RETRY = {409, 429, 500, 502, 503, 504}


def _write(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def create_users(http: httpx.AsyncClient, edges: list[str], admin_key: str, count: int,
                       credits: int) -> list[dict[str, Any]]:
    """`count` users, created through the edges in turn; each answer's key is kept only in memory."""
    run = uuid.uuid4().hex[:8]
    users = []
    for n in range(count):
        name = f"mh{run}u{n}"
        answer = await http.post(f"{edges[n % len(edges)]}/api/admin/create-user", headers={"X-API-Key": admin_key},
                                 json={"username": name, "email": f"{name}@example.test", "initialCredits": credits})
        answer.raise_for_status()
        user = answer.json()["user"]
        users.append({"id": user["id"], "username": name, "key": user["api_key"]})
    return users


async def metered_call(http: httpx.AsyncClient, edge: str, url: str, user: dict[str, Any],
                       deadline_seconds: float) -> dict[str, Any]:
    """One call as a careful client makes it: one key, retried until an answer ends it."""
    key = f"mh-{uuid.uuid4().hex}"
    headers = {"X-API-Key": user["key"], "Idempotency-Key": key}
    record: dict[str, Any] = {"key": key, "user_id": user["id"], "edge": edge, "started": time.time(),
                              "attempts": [], "status": None, "charged": None}
    deadline = time.monotonic() + deadline_seconds
    for n in itertools.count():
        began = time.time()
        try:
            answer = await http.post(f"{url}/api/generate-structure", headers=headers, json=BODY)
        except httpx.TransportError as exc:
            record["attempts"].append({"began": began, "ended": time.time(), "status": None, "error": repr(exc)})
            wait = min(2.0, 0.2 * 2 ** n)
        else:
            record["attempts"].append({
                "began": began, "ended": time.time(), "status": answer.status_code,
                "request_id": answer.headers.get("X-Request-ID"),
                "replayed": answer.headers.get("Idempotent-Replayed") == "true"})
            if answer.status_code not in RETRY:
                record["status"] = answer.status_code
                if answer.status_code == 200:
                    record["charged"] = answer.headers["X-Credits-Charged"]
                break
            wait = min(2.0, float(answer.headers.get("Retry-After") or 0.2 * 2 ** n))
        if time.monotonic() + wait > deadline:
            record["status"] = "gave_up"
            break
        await asyncio.sleep(wait)
    record["ended"] = time.time()
    return record


async def run(config: dict[str, Any]) -> None:
    folder = Path(config["dir"])
    edges: dict[str, str] = config["edges"]
    names = list(edges)
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=4 * config["concurrency"], max_keepalive_connections=config["concurrency"])
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        users = await create_users(http, list(edges.values()), config["admin_key"], config["users"], config["credits"])
        turn = itertools.count()

        async def worker(n: int) -> None:
            edge = names[n % len(names)]
            while not stop.is_set():
                user = users[next(turn) % len(users)]
                records.append(await metered_call(http, edge, edges[edge], user, config["call_deadline"]))

        async def watch() -> None:
            while not (folder / "stop").exists():
                _write(folder / "progress.json", {"users": len(users), "calls": [
                    {"edge": r["edge"], "status": r["status"], "ended": r["ended"]} for r in records]})
                await asyncio.sleep(0.2)
            stop.set()

        await asyncio.gather(watch(), *(worker(n) for n in range(config["concurrency"])))
    _write(folder / "results.json", {"users": [{"id": u["id"], "username": u["username"]} for u in users],
                                     "calls": records})


def main() -> None:
    asyncio.run(run(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
