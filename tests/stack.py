"""The whole system, for tests: embedded PostgreSQL, the simulator, the three gRPC services and the
edge, each a real process on its own free port, with data in a temporary directory.

Nothing of ours is mocked: tests talk HTTP to the edge, gRPC to the services and SQL to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.db_roles import role_passwords, service_dsn
from common.grpc_server import MAX_MESSAGE_BYTES
from common.local_stripe import local_stripe_env
from common.service_auth import ServiceTokens, authenticated_channel, ensure_token_file, parse_tokens
from common.settings import REPO_ROOT, CommonSettings
from common.tls import GrpcTls, load_tls, probe_channel
from devstack.bootstrap import bootstrap
from devstack.certs import ensure_certs
from devstack.embedded_pg import EmbeddedPostgres

#: Each process kind and the module that runs it, in start order.
MODULES = {
    "simulator": "simulator",
    "localstripe": "devstack.local_stripe",
    "auth": "services.auth.server",
    "billing": "services.billing.server",
    "generation": "services.generation.server",
    "edge": "edge",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    data_dir: Path
    dsn: str = ""
    admin_key: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Settings this stack runs with on top of the defaults below (e.g. a short hold TTL for fault tests).
    settings: dict[str, str] = field(default_factory=dict)
    #: Per-process command and environment overrides, so `restart` brings back a replica as it was.
    commands: dict[str, list[str]] = field(default_factory=dict)
    #: Each service's own database URL (its least-privilege role); `dsn` is the owner's, for tests to read.
    role_dsns: dict[str, str] = field(default_factory=dict)
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: TLS everywhere (tests/tls): the edge serves HTTPS and every gRPC port speaks only mutual TLS, with
    #: certificates `fsg certs` makes in DATA_DIR/tls. Off: plaintext, as the rest of the suite runs.
    tls: bool = False
    #: With `tls`, whether the edge serves HTTPS too (False: internal mTLS only, as `make run` runs by default).
    edge_https: bool = True

    @property
    def edge_url(self) -> str:
        return self.url("edge")

    def url(self, edge: str) -> str:
        """The HTTP(S) address of an edge process (`edge` or a replica such as `edge2`)."""
        return f"{'https' if self.tls and self.edge_https else 'http'}://127.0.0.1:{self.ports[edge]}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client passes as `verify` to trust this stack's edge: its CA (and only it) with HTTPS,
        else the default."""
        if self.tls and self.edge_https:
            return ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        return True

    @property
    def grpc_tls(self) -> GrpcTls | None:
        """The `operator` certificate tests present to the services (None: plaintext)."""
        if not self.tls:
            return None
        return load_tls(CommonSettings(FSG_TLS_DIR=str(self.tls_dir)), "operator")  # type: ignore[call-arg]

    @asynccontextmanager
    async def database(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection to the stack's database, closed on leaving."""
        conn = await asyncpg.connect(self.dsn)
        try:
            yield conn
        finally:
            await conn.close()

    def addr(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def token_file(self) -> Path:
        """This stack's own random service token (created on first use, 0600)."""
        return ensure_token_file(self.data_dir / "service-token")

    @property
    def stripe_url(self) -> str:
        """This stack's localstripe (the fake Stripe billing talks to)."""
        return self.env["STRIPE_API_BASE"]

    @property
    def webhook_secret(self) -> str:
        """The secret Stripe events to this stack's edge are signed with."""
        return self.env["STRIPE_WEBHOOK_SECRET"]

    @property
    def tokens(self) -> ServiceTokens:
        return parse_tokens(self.token_file.read_text(), "the test stack's token file")

    def channel(self, service: str) -> grpc.aio.Channel:
        """A channel to `service` that carries the stack's service token (and, with TLS, a certificate), as the
        edge's do."""
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        return authenticated_channel(self.addr(service), self.tokens, options, tls=self.grpc_tls)

    def start(self, overrides: dict[str, str] | None = None) -> Stack:
        """Start everything; `overrides` replace environment settings for every process."""
        self.postgres = EmbeddedPostgres(self.data_dir, free_port())
        self.dsn = self.postgres.start()
        passwords = role_passwords(self.data_dir, {})
        result = asyncio.run(bootstrap(self.dsn, REPO_ROOT / "migrations", "admin", "admin@example.test", passwords))
        assert result.admin_key is not None
        self.admin_key = result.admin_key
        # Each service connects as its own least-privilege role, as under `make run`.
        self.role_dsns = {service: service_dsn(self.dsn, service, secret) for service, secret in passwords.items()}
        self.ports = {name: free_port() for name in MODULES}
        localstripe, billing_stripe = local_stripe_env(self.data_dir, self.ports["localstripe"], self.ports["edge"])
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("FSG_SERVICE_", "FSG_TLS", "EDGE_TLS_"))}
        tls: dict[str, str] = {}
        if self.tls:
            ensure_certs(self.tls_dir)
            tls = {"FSG_TLS_DIR": str(self.tls_dir)}
            if self.edge_https:
                tls.update(EDGE_TLS_CERT=str(self.tls_dir / "edge.crt"), EDGE_TLS_KEY=str(self.tls_dir / "edge.key"))
        self.env = {
            **inherited,  # never an outer FSG_SERVICE_AUTH=off, token or TLS setting: the stack decides
            **tls,
            "FSG_SERVICE_TOKEN_FILE": str(self.token_file),
            "DATABASE_URL": self.dsn,
            "DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            # As under `make run`; tests/logs runs its own stack with LOG_FORMAT=json.
            "LOG_FORMAT": "console",
            "SIM_PORT": str(self.ports["simulator"]),
            "AUTH_PORT": str(self.ports["auth"]),
            "BILLING_PORT": str(self.ports["billing"]),
            "GENERATION_PORT": str(self.ports["generation"]),
            "PORT": str(self.ports["edge"]),
            "AUTH_ADDR": self.addr("auth"),
            "BILLING_ADDR": self.addr("billing"),
            "GENERATION_ADDR": self.addr("generation"),
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.ports['simulator']}",
            "ANTHROPIC_API_KEY": "simulator",
            "GENERATION_SIMULATED": "1",
            # Faults must resolve quickly in tests: a short per-attempt timeout, 3 tries within 3.5 s, short
            # backoff (tests/generation/test_provider_retries.py reads these and checks what it relies on).
            "GENERATION_ANTHROPIC_TIMEOUT_SECONDS": "2",
            "GENERATION_RETRY_MAX_ATTEMPTS": "3",
            "GENERATION_RETRY_BUDGET_SECONDS": "3.5",
            "GENERATION_RETRY_BASE_DELAY_SECONDS": "0.05",
            "GENERATION_RETRY_MAX_DELAY_SECONDS": "0.2",
            "BILLING_SWEEP_INTERVAL_SECONDS": "0.5",
            # The production rate-limit defaults, stated so the suite runs with limits in force; tests
            # that need more for one user switch that user's limits off through the admin API.
            "BILLING_DEFAULT_REQUESTS_PER_MINUTE": "60",
            "BILLING_DEFAULT_MAX_CONCURRENT": "5",
            "DB_POOL_MAX": "20",
            # Purchases go to this stack's own localstripe, whose webhooks reach this stack's edge.
            **localstripe,
            **billing_stripe,
            **self.settings,
            **(overrides or {}),
        }
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        for name, module in MODULES.items():
            self.start_process(name, [sys.executable, "-m", module], logs)
        self.wait_ready()
        return self

    def start_process(self, name: str, command: list[str], logs: Path | None = None,
                      env: dict[str, str] | None = None) -> None:
        """Start `name` (and remember how, for `restart`); `env` overrides the stack's environment."""
        self.commands[name] = command
        if env is not None:
            self.process_env[name] = env
        log = open((logs or self.data_dir / "logs") / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        kind = next((k for k, module in MODULES.items() if command[-1] == module), "")
        role = {"DATABASE_URL": self.role_dsns[kind]} if kind in self.role_dsns else {}
        self.processes[name] = subprocess.Popen(command, cwd=REPO_ROOT, env={
            **self.env, **role, **self.process_env.get(name, {})}, stdout=log, stderr=log)
        log.close()

    def add_replica(self, name: str, kind: str, env: dict[str, str] | None = None) -> None:
        """Start another `billing` or `edge` process on its own port against the same database.

        An edge replica talks to the services named in `env` (e.g. `{"BILLING_ADDR": stack.addr("billing2")}`),
        by default the same ones as the first edge.
        """
        port = free_port()
        self.ports[name] = port
        port_setting = {"billing": "BILLING_PORT", "edge": "PORT"}[kind]
        self.start_process(name, [sys.executable, "-m", MODULES[kind]], env={**(env or {}), port_setting: str(port)})
        if kind == "billing":
            self.wait_serving(name)
        self.wait_ready()

    @contextmanager
    def replica(self, name: str, kind: str, env: dict[str, str] | None = None) -> Iterator[str]:
        """`add_replica` for a block (a module fixture on the shared stack): yields the replica's URL (edge)
        or gRPC address (billing), and stops and forgets it afterwards."""
        self.add_replica(name, kind, env)
        try:
            yield self.url(name) if kind == "edge" else self.addr(name)
        finally:
            if name in self.processes:
                self.stop_process(name)
            for registry in (self.ports, self.commands, self.process_env):
                registry.pop(name, None)

    def wait_serving(self, name: str, timeout: float = 60) -> None:
        """Until a gRPC process answers SERVING to health checks (which need no service token, but with TLS on
        a client certificate, as every call on that port)."""
        deadline = time.monotonic() + timeout
        with probe_channel(self.addr(name), self.grpc_tls) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited early: {self.log(name)[-3000:]}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"{name} never became SERVING")

    def restart(self, name: str) -> None:
        """(Stop and) start one process as it was first started (fault tests)."""
        if name in self.processes:
            self.stop_process(name)
        self.start_process(name, self.commands.get(name) or [sys.executable, "-m", MODULES[name]])
        self.wait_ready()

    def kill(self, name: str) -> None:
        """SIGKILL one process: no graceful drain, in-flight calls are lost (crash tests)."""
        proc = self.processes.pop(name)
        proc.kill()
        proc.wait()

    def stop_process(self, name: str) -> None:
        proc = self.processes.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early: {self.log(name)[-3000:]}")
            try:
                edges = [n for n, c in self.commands.items() if c[-1] == MODULES["edge"] and n in self.processes]
                answers = [httpx.get(f"{self.url(edge)}/readyz", timeout=2, verify=self.verify) for edge in edges]
                if all(a.status_code == 200 for a in answers):
                    return
                last = " ".join(a.text for a in answers if a.status_code != 200)
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready: {last}")

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_process(name)
        if self.postgres is not None:
            self.postgres.stop()
