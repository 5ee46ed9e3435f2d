"""PostgreSQL access shared by the services: the pool and the migration runner.

Migrations are plain SQL files in `migrations/`, applied once each, in file-name order, each in its
own transaction, recorded in `schema_migrations` with a checksum of their SQL (comment lines and blank
lines left out, so a comment can be corrected; any other change to an applied migration is refused).

SQL functions are kept apart, one current definition per file in `migrations/functions/<name>.sql`, and
(re)applied after the versioned migrations whenever a file's checksum changes (recorded in
`schema_functions`): every overload of `<name>` is dropped first, so a changed signature replaces the old
function instead of adding another. A function whose file is gone is dropped. A transaction-level advisory
lock makes simultaneous runs safe (the second waits, then finds nothing to do).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from common.logging import get_logger

log = logging.getLogger(__name__)
_events = get_logger(__name__)

#: Arbitrary but fixed: the advisory-lock key that serialises migration runs.
MIGRATION_LOCK_KEY = 0x46534701

_CONNECT_ERRORS = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's default RESET ALL / UNLISTEN / CLOSE ALL round trip.

    Our services keep no session state on pooled connections (no SET, LISTEN, cursors or session-level
    advisory locks; migrations use transaction-level locks), and asyncpg still rolls back any open
    transaction before this hook runs, so the reset query would only cost a round trip per request.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10, wait_seconds: float = 30,
                      application_name: str | None = None) -> asyncpg.Pool:
    """A pool, retrying while the server is still starting (it may come up after us). `application_name`
    names the connections in pg_stat_activity (and in the server's log lines)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(_CONNECT_ERRORS),
        wait=wait_exponential(multiplier=0.1, max=2),
        stop=stop_after_delay(wait_seconds),
        reraise=True,
        before_sleep=_connect_failed,
    ):
        with attempt:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=30, reset=_keep_session,
                server_settings={"application_name": application_name} if application_name else None,
            )
    return pool


def _connect_failed(state: RetryCallState) -> None:
    """Each failed attempt to open the pool is a `db.connection_problem` event (the error's type only: its
    message may quote the URL)."""
    error = state.outcome.exception() if state.outcome else None
    _events.warning("db.connection_problem", message="cannot connect to the database yet; retrying",
                    error=type(error).__name__, where="connect", attempt=state.attempt_number)


async def schema_behind(conn: asyncpg.Connection, directory: Path) -> list[str]:
    """The migrations and functions of `directory` that the database has not applied (as they are now)."""
    try:
        versions = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        functions = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_functions")}
    except asyncpg.UndefinedTableError:
        versions, functions = set(), {}
    missing = [p.stem for p in migration_files(directory) if p.stem not in versions]
    for name, path in function_files(directory).items():
        if functions.get(name) != hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest():
            missing.append(f"functions/{name}")
    return missing


async def wait_for_schema(pool: asyncpg.Pool, directory: Path, *, wait_seconds: float = 120) -> None:
    """Until the database's schema is what this code expects. Services never migrate (their roles may not
    run DDL): `fsg bootstrap` does, and a service that starts first waits for it, then gives up clearly."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        async with pool.acquire() as conn:
            missing = await schema_behind(conn, directory)
        if not missing:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise SystemExit(f"the database schema is behind this code (missing {', '.join(missing[:5])}); "
                             "run `fsg bootstrap` against it")
        log.warning("waiting for the schema to be migrated (%d step(s) missing; `fsg bootstrap` applies them)",
                    len(missing))
        await asyncio.sleep(1)


#: How `checksum` reads a migration; a database migrated before recorded raw-text checksums (NULL here).
CHECKSUM_RULE = "sql-without-comment-lines"


def checksum(sql: str) -> str:
    """The SHA-256 of a migration's SQL without its comment lines (lines that start with `--`), blank lines
    and trailing spaces."""
    lines = [line.rstrip() for line in sql.splitlines()]
    code = "\n".join(line for line in lines if line and not line.lstrip().startswith("--"))
    return hashlib.sha256(code.encode()).hexdigest()


def migration_files(directory: Path) -> list[Path]:
    """The migration files in the order they apply."""
    return sorted(p for p in directory.glob("*.sql") if p.is_file())


def function_files(directory: Path) -> dict[str, Path]:
    """The SQL function files, by the name of the function each defines."""
    return {p.stem: p for p in sorted((directory / "functions").glob("*.sql")) if p.is_file()}


_DROP_OVERLOADS = """
SELECT format('DROP FUNCTION %s', p.oid::regprocedure)
FROM pg_proc p WHERE p.proname = $1 AND p.pronamespace = 'public'::regnamespace
"""


async def _drop_function(conn: asyncpg.Connection, name: str) -> None:
    for (statement,) in await conn.fetch(_DROP_OVERLOADS, name):
        await conn.execute(statement)


async def _apply_functions(conn: asyncpg.Connection, directory: Path) -> list[str]:
    done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_functions")}
    files = function_files(directory)
    applied: list[str] = []
    for name in sorted(set(done) - set(files)):
        await _drop_function(conn, name)
        await conn.execute("DELETE FROM schema_functions WHERE name = $1", name)
        log.info("dropped function %s (its file is gone)", name)
    for name, path in files.items():
        sql = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if done.get(name) == checksum:
            continue
        await _drop_function(conn, name)
        await conn.execute(sql)
        await conn.execute(
            """INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()""",
            name, checksum,
        )
        applied.append(f"functions/{name}")
        log.info("applied function %s", name)
    return applied


async def _adopt_checksum_rule(conn: asyncpg.Connection, directory: Path) -> None:
    """Once, for a database migrated before checksums left comments out: record today's checksums of the
    migrations it already applied (their comments may since have been corrected; trusted once, checked from
    then on)."""
    await conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum_rule text")
    files = {path.stem: path for path in migration_files(directory)}
    for row in await conn.fetch("SELECT version FROM schema_migrations WHERE checksum_rule IS NULL"):
        if row["version"] in files:
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $2, checksum_rule = $3 WHERE version = $1",
                row["version"], checksum(files[row["version"]].read_text(encoding="utf-8")), CHECKSUM_RULE)


async def apply_migrations(conn: asyncpg.Connection, directory: Path) -> list[str]:
    """Apply every migration not yet recorded; returns the versions applied by this call."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now());
               CREATE TABLE IF NOT EXISTS schema_functions (
                   name       text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        await _adopt_checksum_rule(conn, directory)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        for path in migration_files(directory):
            sql = path.read_text(encoding="utf-8")
            version = path.stem
            if version in done:
                if done[version] != checksum(sql):
                    raise RuntimeError(f"migration {version} changed after it was applied; add a new one instead")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum, checksum_rule) VALUES ($1, $2, $3)",
                    version, checksum(sql), CHECKSUM_RULE,
                )
            applied_now.append(version)
            log.info("applied migration %s", version)
        applied_now += await _apply_functions(conn, directory)
    return applied_now


async def migrate(dsn: str, directory: Path) -> list[str]:
    """Connect, apply pending migrations, disconnect."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await apply_migrations(conn, directory)
    finally:
        await pool.close()
