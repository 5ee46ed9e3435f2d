"""Projects in PostgreSQL. Every read and write is scoped by user id: another user's project is
indistinguishable from a missing one (ProjectNotFound)."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import asyncpg

from services.generation.errors import ProjectNotFound, ProjectPathTaken

PROJECT_PATH = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_COLUMNS = ("project_path, title, story_input, template, structure, plot_points, scenes, dialogue, "
            "created_at, updated_at")
#: What a prompt is built from: every column but `dialogue`, which no prompt carries and which is the
#: largest part of a finished project (a few KB per scene), so planning a call never reads or decodes it.
_PLANNING_COLUMNS = "project_path, title, story_input, template, structure, plot_points, scenes, created_at, updated_at"


def new_project_path(title: str) -> str:
    """A readable, unguessable path: `the-last-heist-3f9a2c1b`."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].strip("-") or "untitled"
    return f"{slug}-{secrets.token_hex(4)}"


def _document(row: asyncpg.Record) -> dict[str, Any]:
    doc = {k: row[k] for k in ("project_path", "title")}
    for k in ("story_input", "template", "structure", "plot_points", "scenes", "dialogue"):
        if k in row:
            doc[k] = json.loads(row[k])
    doc["created_at"] = row["created_at"].isoformat()
    doc["updated_at"] = row["updated_at"].isoformat()
    return doc


class ProjectRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, user_id: int, title: str, story_input: dict[str, Any], template: dict[str, Any],
        structure: dict[str, Any],
    ) -> dict[str, Any]:
        path = new_project_path(title)
        try:
            row = await self._pool.fetchrow(
                f"""INSERT INTO projects (user_id, project_path, title, story_input, template, structure)
                    VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb) RETURNING {_COLUMNS}""",
                user_id, path, title, json.dumps(story_input), json.dumps(template), json.dumps(structure),
            )
        except asyncpg.UniqueViolationError as exc:
            raise ProjectPathTaken() from exc
        return _document(row)

    async def get(self, user_id: int, project_path: str, *, for_planning: bool = False) -> dict[str, Any]:
        """The whole project; `for_planning` leaves out `dialogue` (see _PLANNING_COLUMNS)."""
        if not PROJECT_PATH.fullmatch(project_path):
            raise ProjectNotFound()
        columns = _PLANNING_COLUMNS if for_planning else _COLUMNS
        row = await self._pool.fetchrow(
            f"SELECT {columns} FROM projects WHERE project_path = $1 AND user_id = $2", project_path, user_id
        )
        if row is None:
            raise ProjectNotFound()
        return _document(row)

    async def list(self, user_id: int) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                """SELECT project_path, title, template->>'id' AS template_id, created_at, updated_at
                   FROM projects WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1000""",
                user_id,
            )
        )

    async def delete(self, user_id: int, project_path: str) -> None:
        if not PROJECT_PATH.fullmatch(project_path):
            raise ProjectNotFound()
        status = await self._pool.execute(
            "DELETE FROM projects WHERE project_path = $1 AND user_id = $2", project_path, user_id
        )
        if status.endswith(" 0"):
            raise ProjectNotFound()

    async def set_in(self, user_id: int, project_path: str, column: str, key: str, value: Any) -> None:
        """Replace `column[key]` (plot points of an act, scenes of an act, one scene's dialogue)."""
        assert column in ("plot_points", "scenes", "dialogue")
        status = await self._pool.execute(
            f"""UPDATE projects SET {column} = jsonb_set({column}, ARRAY[$3], $4::jsonb), updated_at = now()
                WHERE project_path = $1 AND user_id = $2""",
            project_path, user_id, key, json.dumps(value),
        )
        if status.endswith(" 0"):
            raise ProjectNotFound()

    async def append_scene(self, user_id: int, project_path: str, act_key: str, scene: dict[str, Any]) -> int:
        """Append atomically (two concurrent calls both land); returns the new scene's index."""
        index = await self._pool.fetchval(
            """UPDATE projects
               SET scenes = jsonb_set(scenes, ARRAY[$3],
                                      COALESCE(scenes->$3, '[]'::jsonb) || jsonb_build_array($4::jsonb)),
                   updated_at = now()
               WHERE project_path = $1 AND user_id = $2
               RETURNING jsonb_array_length(scenes->$3) - 1""",
            project_path, user_id, act_key, json.dumps(scene),
        )
        if index is None:
            raise ProjectNotFound()
        return int(index)
