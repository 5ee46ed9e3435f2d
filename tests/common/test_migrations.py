"""Migrations: each applied once, in order, recorded; safe when several processes start together;
an edited migration is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from common.db import apply_migrations, function_files, migrate, migration_files
from common.settings import REPO_ROOT
from tests.stack import Stack

MIGRATIONS = REPO_ROOT / "migrations"


@pytest.fixture
async def fresh_dsn(stack: Stack, db: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield stack.dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_concurrent_starts_apply_each_migration_once(fresh_dsn: str) -> None:
    results = await asyncio.gather(*[migrate(fresh_dsn, MIGRATIONS) for _ in range(4)])
    applied = [version for result in results for version in result]
    expected = [p.stem for p in migration_files(MIGRATIONS)]
    functions = [f"functions/{name}" for name in function_files(MIGRATIONS)]
    assert sorted(applied) == sorted(expected + functions)  # all applied, none twice
    conn = await asyncpg.connect(fresh_dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY applied_at, version")
        assert [r["version"] for r in rows] == expected
        assert await apply_migrations(conn, MIGRATIONS) == []
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused_but_a_comment_may_be_corrected(fresh_dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    copy.mkdir()
    for path in migration_files(MIGRATIONS):
        (copy / path.name).write_text(path.read_text())
    await migrate(fresh_dsn, copy)
    first = migration_files(copy)[0]
    first.write_text("-- a corrected comment\n" + first.read_text() + "\n   -- another\n")
    assert await migrate(fresh_dsn, copy) == []
    first.write_text(first.read_text() + "\nSELECT 1;\n")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await migrate(fresh_dsn, copy)


async def test_a_database_migrated_with_raw_checksums_adopts_the_rule_once(fresh_dsn: str, tmp_path: Path) -> None:
    """Before comments were left out, checksums covered the whole text: such a database is trusted once (its
    migrations' comments may since have been corrected), then checked by the new rule."""
    await migrate(fresh_dsn, MIGRATIONS)
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'raw text checksum', checksum_rule = NULL")
        assert await migrate(fresh_dsn, MIGRATIONS) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE checksum_rule IS NULL") == 0
        assert await conn.fetchval("SELECT count(DISTINCT checksum_rule) FROM schema_migrations") == 1
    finally:
        await conn.close()


async def test_a_function_file_is_the_functions_one_definition(fresh_dsn: str, tmp_path: Path) -> None:
    """A function is (re)applied when its file changes, with every overload of its name dropped first (so
    a new signature replaces the old one), left alone when unchanged, and dropped when its file is gone."""
    copy = tmp_path / "migrations"
    (copy / "functions").mkdir(parents=True)
    (copy / "0001_t.sql").write_text("CREATE TABLE t (x integer);")
    function = copy / "functions" / "t_double.sql"
    function.write_text("CREATE FUNCTION t_double(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT 2 * x $$;")
    assert await migrate(fresh_dsn, copy) == ["0001_t", "functions/t_double"]
    assert await migrate(fresh_dsn, copy) == []

    function.write_text("CREATE FUNCTION t_double(x numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT 2 * x $$;")
    assert await migrate(fresh_dsn, copy) == ["functions/t_double"]
    conn = await asyncpg.connect(fresh_dsn)
    try:
        signatures = await conn.fetch("SELECT oid::regprocedure::text AS s FROM pg_proc WHERE proname = 't_double'")
        assert [r["s"] for r in signatures] == ["t_double(numeric)"]
        function.unlink()
        assert await migrate(fresh_dsn, copy) == []
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 't_double'") == 0
        assert await conn.fetchval("SELECT count(*) FROM schema_functions") == 0
    finally:
        await conn.close()
