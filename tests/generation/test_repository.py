"""ProjectRepository against the real database: planning reads leave out the dialogue column."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from common.db import create_pool
from services.generation.errors import ProjectNotFound
from services.generation.repository import ProjectRepository
from tests.helpers import UserFactory
from tests.stack import Stack


@pytest.fixture
async def projects(stack: Stack) -> AsyncIterator[ProjectRepository]:
    pool: asyncpg.Pool = await create_pool(stack.dsn, min_size=1, max_size=2)
    try:
        yield ProjectRepository(pool)
    finally:
        await pool.close()


async def test_planning_read_is_the_project_without_its_dialogue(projects: ProjectRepository,
                                                                 users: UserFactory) -> None:
    user = users.create(credits=1)
    template = {"id": "three-act", "name": "Three-Act", "acts": [{"key": "setup", "name": "Setup"}]}
    created = await projects.create(user.id, "Repo test", {"title": "Repo test"}, template,
                                    {"setup": {"name": "Setup", "description": "It begins."}})
    path = created["project_path"]
    scene = {"slugline": "INT. ROOM - DAY", "title": "T", "description": "D", "characters": ["ANA"]}
    assert await projects.append_scene(user.id, path, "setup", scene) == 0
    await projects.set_in(user.id, path, "dialogue", "setup:0", "ANA\nHello.")

    whole = await projects.get(user.id, path)
    planning = await projects.get(user.id, path, for_planning=True)
    assert whole["dialogue"] == {"setup:0": "ANA\nHello."}
    assert "dialogue" not in planning
    assert planning == {k: v for k, v in whole.items() if k != "dialogue"}

    other = users.create(credits=1)
    with pytest.raises(ProjectNotFound):
        await projects.get(other.id, path, for_planning=True)
