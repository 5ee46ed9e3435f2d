"""Projects in PostgreSQL: a project row (story input, template, structure) and its generated parts, one
row per saved result (migrations/0010_project_parts.sql). Every read and write is scoped by user id:
another user's project is indistinguishable from a missing one (ProjectNotFound).

A metered call *stages* its result under the hold that pays for it; the result is part of the project only
once billing has posted that hold (billing's view `hold_outcomes`). So a result nobody paid for is never
read, whatever failed between the save and the post, and `discard_unpaid` deletes it later.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any

import asyncpg

from services.generation.errors import ProjectNotFound, ProjectPathTaken
from services.generation.project import Project
from services.generation.templates import StoryTemplate

PROJECT_PATH = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def _paid(alias: str) -> str:
    """SQL: the row (of `alias`) counts (migrations/functions/generation_paid.sql)."""
    return f"generation_paid({alias}.hold_id, {alias}.settled)"


#: The project ($1 path, $2 user) with its paid parts in the order they were saved, in one round trip ($3:
#: whether to read dialogue, the largest part of a finished script, which no prompt carries).
_PROJECT = f"""
SELECT p.project_path, p.title, p.story_input, p.template, p.structure, p.created_at,
       greatest(p.updated_at, (SELECT max(pp.created_at) FROM project_parts pp
                               WHERE pp.project_id = p.id AND {_paid('pp')})) AS updated_at,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object('kind', pp.kind, 'act_key', pp.act_key,
                                                     'scene_index', pp.scene_index, 'payload', pp.payload)
                                  ORDER BY pp.id), '[]')
        FROM project_parts pp
        WHERE pp.project_id = p.id AND ($3 OR pp.kind <> 'dialogue') AND {_paid('pp')}) AS parts
FROM projects p WHERE p.project_path = $1 AND p.user_id = $2 AND {_paid('p')}
"""

_LIST = f"""
SELECT p.project_path, p.title, p.template->>'id' AS template_id, p.created_at,
       greatest(p.updated_at, (SELECT max(pp.created_at) FROM project_parts pp
                               WHERE pp.project_id = p.id AND {_paid('pp')})) AS updated_at
FROM projects p WHERE p.user_id = $1 AND {_paid('p')}
ORDER BY p.created_at DESC LIMIT 1000
"""

_CREATE = """
INSERT INTO projects (user_id, project_path, title, story_input, template, structure, hold_id)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)
"""

#: Stage a part of a paid project of the user ($1 path, $2 user) in one statement; no row = no such project
#: (or deleted since it was planned).
_STAGE = f"""
INSERT INTO project_parts (project_id, kind, act_key, scene_index, payload, hold_id)
SELECT p.id, $3, $4, $5, $6::jsonb, $7 FROM projects p WHERE p.project_path = $1 AND p.user_id = $2 AND {_paid('p')}
RETURNING id, project_id
"""
#: Add a scene, numbered in its act, in one round trip (migrations/functions/generation_stage_scene.sql).
_STAGE_SCENE = "SELECT generation_stage_scene($1, $2, $3, $4::jsonb, $5)"

_DELETE = f"DELETE FROM projects p WHERE p.project_path = $1 AND p.user_id = $2 AND {_paid('p')}"

#: Cleanup: forget what a voided or expired hold staged, and mark what a posted one staged as settled (so
#: the next pass, and every read, skips it). Only unsettled rows are scanned (partial indexes).
_DISCARD = [
    """DELETE FROM project_parts pp USING hold_outcomes o
       WHERE NOT pp.settled AND o.hold_id = pp.hold_id AND o.outcome <> 'posted'""",
    """UPDATE project_parts pp SET settled = true FROM hold_outcomes o
       WHERE NOT pp.settled AND o.hold_id = pp.hold_id AND o.outcome = 'posted'""",
    """DELETE FROM projects p USING hold_outcomes o
       WHERE NOT p.settled AND o.hold_id = p.hold_id AND o.outcome <> 'posted'""",
    """UPDATE projects p SET settled = true FROM hold_outcomes o
       WHERE NOT p.settled AND o.hold_id = p.hold_id AND o.outcome = 'posted'""",
]


def new_project_path(title: str) -> str:
    """A readable, unguessable path: `the-last-heist-3f9a2c1b`."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].strip("-") or "untitled"
    return f"{slug}-{secrets.token_hex(4)}"


def assemble(row: asyncpg.Record) -> Project:
    """The project from its row and its paid parts, applied in the order they were saved: the newest of each
    (the plot points of an act, the scene list of an act, the dialogue of a scene, a whole-project part such
    as the cast), and each scene added to an act after its newest scene list."""
    fields: dict[str, Any] = {"plot_points": {}, "scenes": {}, "dialogue": {}}
    for part in json.loads(row["parts"]):
        kind, act, payload = part["kind"], part["act_key"], part["payload"]
        if not act:
            fields[kind] = payload
        elif kind == "scene":
            fields["scenes"].setdefault(act, []).append(payload)
        elif kind == "dialogue":
            fields["dialogue"][f"{act}:{part['scene_index']}"] = payload
        else:
            fields.setdefault(kind, {})[act] = list(payload) if isinstance(payload, list) else payload
    return Project.model_validate({
        "project_path": row["project_path"], "title": row["title"], "story_input": json.loads(row["story_input"]),
        "template": json.loads(row["template"]), "structure": json.loads(row["structure"]),
        "created_at": row["created_at"], "updated_at": row["updated_at"], **fields,
    })


class Stager:
    """Saves one call's answer under the hold that pays for it (kinds.Stage)."""

    def __init__(self, repository: ProjectRepository, user_id: int, path: str, hold_id: uuid.UUID | None) -> None:
        self._repository = repository
        self._user_id = user_id
        self._hold_id = hold_id
        self.path = path

    async def project(self, title: str, story_input: dict[str, Any], template: StoryTemplate,
                      structure: dict[str, Any]) -> str:
        self.path = await self._repository.create(self._user_id, title, story_input,
                                                  template.model_dump(mode="json"), structure, self._hold_id)
        return self.path

    async def part(self, kind: str, act_key: str, payload: Any, scene_index: int = -1) -> int:
        return await self._repository.stage(self._user_id, self.path, kind, act_key, payload, self._hold_id,
                                            scene_index)


class ProjectRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, user_id: int, title: str, story_input: dict[str, Any], template: dict[str, Any],
        structure: dict[str, Any], hold_id: uuid.UUID | None = None,
    ) -> str:
        """A new project, staged under `hold_id` (part of the user's projects once that hold is posted);
        returns its path."""
        path = new_project_path(title)
        try:
            await self._pool.execute(_CREATE, user_id, path, title, json.dumps(story_input), json.dumps(template),
                                     json.dumps(structure), hold_id)
        except asyncpg.UniqueViolationError as exc:
            raise ProjectPathTaken() from exc
        return path

    async def get(self, user_id: int, project_path: str, *, for_planning: bool = False) -> Project:
        """The whole project; `for_planning` leaves out the dialogue (no prompt carries it)."""
        if not PROJECT_PATH.fullmatch(project_path):
            raise ProjectNotFound()
        row = await self._pool.fetchrow(_PROJECT, project_path, user_id, not for_planning)
        if row is None:
            raise ProjectNotFound()
        return assemble(row)

    def stager(self, user_id: int, project_path: str, hold_id: uuid.UUID | None) -> Stager:
        return Stager(self, user_id, project_path, hold_id)

    async def list(self, user_id: int) -> list[asyncpg.Record]:
        return list(await self._pool.fetch(_LIST, user_id))

    async def delete(self, user_id: int, project_path: str) -> None:
        if not PROJECT_PATH.fullmatch(project_path):
            raise ProjectNotFound()
        status = await self._pool.execute(_DELETE, project_path, user_id)
        if status.endswith(" 0"):
            raise ProjectNotFound()

    async def stage(self, user_id: int, project_path: str, kind: str, act_key: str, payload: Any,
                    hold_id: uuid.UUID | None = None, scene_index: int = -1) -> int:
        """Save one part (plot points of an act, the scenes of an act, one added scene, one scene's dialogue)
        as a new row under `hold_id`: one INSERT, the project's other rows untouched. Returns, for an added
        scene, its index in the act (else -1)."""
        if kind == "scene":
            index = await self._pool.fetchval(_STAGE_SCENE, project_path, user_id, act_key, json.dumps(payload),
                                              hold_id)
            if index is None:
                raise ProjectNotFound()
            return int(index)
        if await self._pool.fetchrow(_STAGE, project_path, user_id, kind, act_key, scene_index, json.dumps(payload),
                                     hold_id) is None:
            raise ProjectNotFound()
        return -1

    async def discard_unpaid(self) -> int:
        """Delete what voided or expired holds staged; mark what posted ones staged as settled. Returns how
        many rows were deleted."""
        deleted = 0
        async with self._pool.acquire() as conn:
            for statement in _DISCARD:
                status = await conn.execute(statement)
                if status.startswith("DELETE"):
                    deleted += int(status.rsplit(" ", 1)[-1])
        return deleted
