"""`fsg backup` and `fsg restore`: the whole database as one pg_dump custom-format file, and back.

A backup is `pg_dump -Fc` of the database (every table, view, function, sequence and the GRANTs to the
services' roles), written under a temporary name and renamed when complete, so a file named like a backup is
always a whole one; the newest N are kept. What it does not hold lives outside the database: the roles
themselves and their passwords (roles belong to the cluster), the service token, localstripe's state.

A restore runs the archive through the bundled `pg_restore` into `psql` as one transaction (a failure leaves
the database as it was), with `--no-owner`: the objects belong to whoever restores, as on the source, where
the migrator owned them. The services' roles are created first when missing (NOLOGIN, as migration 0011
creates them) so that the archive's GRANTs apply; the bootstrap (`make run`, `fsg bootstrap`) then gives them
LOGIN and their passwords, as on any start. A database with tables in `public` is refused unless forced; then
`public` is dropped and recreated in the same transaction, and only while no service is connected.

The password never reaches a command line (it goes to libpq as PGPASSWORD) nor any message.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from common.db_roles import SERVICE_ROLES, ensure_roles
from devstack.embedded_pg import bin_dir

#: fsg-<UTC time to the microsecond>.dump: names sort as times do, and two backups never share one.
_NAME = re.compile(r"^fsg-\d{8}T\d{6}\.\d{6}Z\.dump$")
PARTIAL_SUFFIX = ".partial"

#: The `public` schema as PostgreSQL 15+ creates it in a new database.
_CLEAN = ("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
          "GRANT USAGE ON SCHEMA public TO PUBLIC;")


class BackupError(Exception):
    """What went wrong, in one line for the operator (never with a password)."""


def libpq(dsn: str) -> tuple[str, dict[str, str]]:
    """(the URL without its password, the environment that gives libpq the password)."""
    parts = urlsplit(dsn)
    password = parts.password
    if password is None:
        return dsn, {}
    userinfo = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    netloc = f"{userinfo}@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc)), {"PGPASSWORD": unquote(password)}


def _tool(name: str) -> str:
    """The bundled client tool: PostgreSQL 18's, which dumps and restores servers of older versions too."""
    return str(bin_dir() / name)


def backups(directory: Path) -> list[Path]:
    """The complete backups in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if _NAME.match(path.name))


def backup(dsn: str, directory: Path, keep: int) -> Path:
    """Dump the database into a new timestamped file in `directory`, then delete all but the newest `keep`."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    target = directory / f"fsg-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}.dump"
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in directory.glob(f"fsg-*.dump{PARTIAL_SUFFIX}"):  # left by a dump that was killed
            stale.unlink()
        # The dump holds key hashes and webhook secrets: only its owner may read it.
        partial.touch(mode=0o600)
    except OSError as exc:
        raise BackupError(f"cannot write backups to {directory}: {exc.strerror}") from None
    url, env = libpq(dsn)
    done = subprocess.run([_tool("pg_dump"), "--format=custom", f"--file={partial}", f"--dbname={url}"],
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {_first_line(done.stderr)}")
    partial.replace(target)
    for old in backups(directory)[:-keep]:
        old.unlink()
    return target


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def check_archive(file: Path) -> None:
    """Refuse anything pg_restore cannot read as a custom-format archive, before touching any database."""
    if not file.is_file():
        raise BackupError(f"{file}: no such file")
    listed = subprocess.run([_tool("pg_restore"), "--list", str(file)], capture_output=True, text=True,
                            check=False)
    if listed.returncode != 0:
        raise BackupError(f"{file} is not a backup made by `fsg backup` (pg_dump -Fc): "
                          f"{_first_line(listed.stderr)}")


async def _prepare(dsn: str, force: bool) -> None:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')")
        if tables and not force:
            raise BackupError(f"the database is not empty ({tables} tables, views and sequences in public): "
                              "`fsg restore --force FILE` replaces everything in it")
        if tables:
            connected = await conn.fetch(
                "SELECT usename, count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND usename = ANY($1::text[]) GROUP BY usename ORDER BY usename", list(SERVICE_ROLES.values()))
            if connected:
                who = ", ".join(f"{row['usename']} ×{row['n']}" for row in connected)
                raise BackupError(f"services are connected to the database ({who}): stop them (or `make run`) "
                                  "before replacing it")
        try:
            await ensure_roles(conn)
        except asyncpg.InsufficientPrivilegeError:
            raise BackupError("the services' roles (" + ", ".join(SERVICE_ROLES.values()) + ") are missing and this "
                              "user may not create them: create them first (CREATE ROLE fsg_auth; …)") from None
    finally:
        await conn.close()


def restore(dsn: str, file: Path, force: bool) -> None:
    """Restore `file` into the database at `dsn` in one transaction; see the module docstring."""
    check_archive(file)
    asyncio.run(_prepare(dsn, force))
    url, env = libpq(dsn)
    full_env = {**os.environ, **env}
    # The whole script first: psql commits what it was given at the end of its input, so a pg_restore that
    # died half-way through a pipe would commit half a database.
    with tempfile.NamedTemporaryFile(prefix="fsg-restore-", suffix=".sql") as script:  # 0600
        written = subprocess.run([_tool("pg_restore"), "--no-owner", f"--file={script.name}", str(file)],
                                 capture_output=True, text=True, env=full_env, check=False)
        if written.returncode != 0:
            raise BackupError(f"pg_restore could not read {file}: {_first_line(written.stderr)}")
        clean = ["-c", _CLEAN] if force else []
        applied = subprocess.run([_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                  f"--dbname={url}", *clean, "-f", script.name], capture_output=True, text=True,
                                 env=full_env, check=False)
    if applied.returncode != 0:
        raise BackupError(f"the restore failed and changed nothing: {_first_line(applied.stderr)}")
