"""What saving one result costs on a long project: time and WAL written per save of a scene and of a scene's
dialogue, on a project that already holds 60 scenes, each with its dialogue (a finished feature's worth).

    .venv/bin/python -m bench.project_saves

Runs against an embedded PostgreSQL of its own in a temporary directory, through the generation service's
own repository (`ProjectRepository.stage`: one INSERT of the part, the project's other rows untouched).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from common.db import create_pool, migrate
from common.settings import REPO_ROOT
from devstack.embedded_pg import EmbeddedPostgres
from services.generation.repository import ProjectRepository
from tests.stack import free_port

SCENES, SAVES = 60, 200
TEMPLATE = {"id": "three-act", "name": "Three-Act", "description": "", "acts": [
    {"key": "setup", "name": "Setup", "description": ""}]}

def _prose(rng: random.Random, words: int) -> str:
    """Text that compresses like a screenplay does (not a repeated line, which TOAST would shrink to nothing)."""
    vocabulary = ["the", "rain", "vault", "MAYA", "JONAS", "quietly", "door", "light", "we", "go", "tonight",
                  "never", "back", "alarm", "street", "hands", "cold", "money", "run", "wait", "now", "look"]
    vocabulary += [f"{w}{n}" for w in ("night", "gun", "key", "car") for n in range(50)]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


_RNG = random.Random(7)
SCENE = {"slugline": "INT. WAREHOUSE - NIGHT", "title": "The pitch", "description": _prose(_RNG, 70),
         "characters": ["MAYA", "JONAS"]}


def dialogue(seed: int) -> str:
    """A scene's dialogue, different for every scene (as a script's are: identical ones would compress away)."""
    rng = random.Random(seed)
    return "\n\n".join(f"{rng.choice(['MAYA', 'JONAS'])}\n{_prose(rng, 25)}" for _ in range(16))


async def _wal(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


async def measure(dsn: str) -> dict[str, tuple[float, float]]:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    projects = ProjectRepository(pool)
    path = await projects.create(1, "Long", {"title": "Long"}, TEMPLATE, {"setup": {"name": "S", "description": "D"}})
    for index in range(SCENES):
        await projects.stage(1, path, "scene", "setup", SCENE)
        await projects.stage(1, path, "dialogue", "setup", dialogue(index), scene_index=index)
    texts = [dialogue(SCENES + i) for i in range(SAVES)]  # made before the clock starts
    results: dict[str, tuple[float, float]] = {}
    async with pool.acquire() as conn:
        for what, save in (
            ("add a scene", lambda i: projects.stage(1, path, "scene", "setup", SCENE)),
            ("save a dialogue", lambda i: projects.stage(1, path, "dialogue", "setup", texts[i],
                                                         scene_index=i % SCENES)),
        ):
            times = []
            wal_before = await _wal(conn)
            for i in range(SAVES):
                started = time.perf_counter()
                await save(i)
                times.append((time.perf_counter() - started) * 1000)
            results[what] = (statistics.median(times), (await _wal(conn) - wal_before) / SAVES)
    await pool.close()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp), free_port())
        dsn = server.start()
        try:
            asyncio.run(migrate(dsn, REPO_ROOT / "migrations"))
            results = asyncio.run(measure(dsn))
        finally:
            server.stop()
    print(f"a project of {SCENES} scenes, each with its dialogue; median of {SAVES} saves")
    for what, (ms, wal) in results.items():
        print(f"  {what:16} {ms:6.2f} ms   {wal / 1024:7.1f} KiB of WAL per save")


if __name__ == "__main__":
    main()
