"""ProjectRepository against the real database, with billing's real holds: a staged result is part of the
project only once its hold is posted; what a voided hold staged is never read and is deleted by the
cleanup; planning reads leave out the dialogue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from common.db import create_pool
from services.billing.repository import BillingRepository, UsageRecord
from services.generation.errors import ProjectNotFound
from services.generation.repository import ProjectRepository
from tests.helpers import UserFactory
from tests.stack import Stack

TEMPLATE = {"id": "three-act", "name": "Three-Act", "description": "", "acts": [
    {"key": "setup", "name": "Setup", "description": ""}]}
SCENE = {"slugline": "INT. ROOM - DAY", "title": "T", "description": "D", "characters": ["ANA"]}


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool: asyncpg.Pool = await create_pool(stack.dsn, min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


async def _hold(billing: BillingRepository, user_id: int) -> uuid.UUID:
    hold = uuid.uuid4()
    assert (await billing.reserve(str(hold), user_id, "1")).ok
    return hold


async def test_a_staged_result_counts_only_once_its_hold_is_posted(pool: asyncpg.Pool, users: UserFactory) -> None:
    projects, billing = ProjectRepository(pool), BillingRepository(pool)
    user = users.create(credits=10)
    created = await _hold(billing, user.id)
    path = await projects.create(user.id, "Repo test", {"title": "Repo test"}, TEMPLATE,
                                 {"setup": {"name": "Setup", "description": "It begins."}}, created)
    with pytest.raises(ProjectNotFound):
        await projects.get(user.id, path)
    assert [r["project_path"] for r in await projects.list(user.id)] == []
    await billing.commit(str(created), user.id, "0.5", UsageRecord())
    assert (await projects.get(user.id, path)).scenes == {}

    paid, unpaid = await _hold(billing, user.id), await _hold(billing, user.id)
    assert await projects.stage(user.id, path, "scene", "setup", SCENE, paid) == 0
    assert await projects.stage(user.id, path, "scene", "setup", {**SCENE, "title": "Lost"}, unpaid) == 1
    await projects.stage(user.id, path, "dialogue", "setup", "ANA\nHello.", paid, scene_index=0)
    assert (await projects.get(user.id, path)).scenes == {}, "nothing is read before its hold is posted"

    await billing.commit(str(paid), user.id, "0.5", UsageRecord())
    await billing.release(str(unpaid), user.id, UsageRecord())
    whole = await projects.get(user.id, path)
    assert whole.document()["scenes"] == {"setup": [SCENE]} and whole.dialogue == {"setup:0": "ANA\nHello."}
    # A scene staged now lands after the paid one: the voided one no longer counts.
    assert await projects.stage(user.id, path, "scene", "setup", SCENE, await _hold(billing, user.id)) == 1

    assert await projects.discard_unpaid() >= 1
    assert await pool.fetchval("SELECT count(*) FROM project_parts WHERE hold_id = $1", unpaid) == 0
    assert await pool.fetchval("SELECT settled FROM project_parts WHERE hold_id = $1 AND kind = 'scene'", paid)
    assert await projects.get(user.id, path) == whole


async def test_planning_read_is_the_project_without_its_dialogue(pool: asyncpg.Pool, users: UserFactory) -> None:
    projects = ProjectRepository(pool)
    user = users.create(credits=1)
    path = await projects.create(user.id, "Repo test", {"title": "Repo test"}, TEMPLATE,
                                 {"setup": {"name": "Setup", "description": "It begins."}})
    assert await projects.stage(user.id, path, "scene", "setup", SCENE) == 0
    await projects.stage(user.id, path, "dialogue", "setup", "ANA\nHello.", scene_index=0)

    whole = await projects.get(user.id, path)
    planning = await projects.get(user.id, path, for_planning=True)
    assert whole.dialogue == {"setup:0": "ANA\nHello."}
    assert planning.dialogue == {}
    assert planning.model_copy(update={"dialogue": whole.dialogue}) == whole

    other = users.create(credits=1)
    with pytest.raises(ProjectNotFound):
        await projects.get(other.id, path, for_planning=True)
    with pytest.raises(ProjectNotFound):
        await projects.stage(other.id, path, "scene", "setup", SCENE)
