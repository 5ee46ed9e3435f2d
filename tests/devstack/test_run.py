"""`fsg run` (what `make run` calls) as a user meets it: it prints the masked DATABASE_URL and the guide's
admin lines, serves the guide's endpoints, keeps the low-credit mails in its local mail sink where its banner
says, stops every process and PostgreSQL on SIGTERM/Ctrl-C, and a second run on the same data keeps every
user and credit. It also generates the services' token once
(DATA_DIR/service-token, 0600, never printed) and the services demand it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import psutil

from common.db_roles import role_passwords
from common.settings import CommonSettings
from common.tls import load_tls, probe_channel
from devstack.embedded_pg import EmbeddedPostgres
from protos import auth_pb2, auth_pb2_grpc
from tests.stack import Stack, free_port

#: The launcher's port variables by the short names tests use; a port not given is the data directory's own.
PORT_VARIABLES = {"pg": "PG_PORT", "edge": "PORT", "auth": "AUTH_PORT", "billing": "BILLING_PORT",
                  "generation": "GENERATION_PORT", "sim": "SIM_PORT", "stripe": "LOCALSTRIPE_PORT",
                  "mailsink": "MAILSINK_PORT"}


class Run:
    def __init__(self, data_dir: Path, ports: dict[str, int], database_url: str | None = None,
                 extra: dict[str, str] | None = None) -> None:
        env = {**os.environ, "DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
        for name in ("DATABASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "FSG_SERVICE_TOKEN",
                     "FSG_SERVICE_TOKEN_FILE", "FSG_SERVICE_AUTH", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
                     "STRIPE_API_BASE", "STRIPE_PUBLISHABLE_KEY", "SMTP_URL", "FSG_TLS", "FSG_TLS_DIR", "FSG_TLS_CA",
                     "FSG_TLS_CERT", "FSG_TLS_KEY", "EDGE_TLS_CERT", "EDGE_TLS_KEY", "AUTH_ADDR", "BILLING_ADDR",
                     "GENERATION_ADDR", *PORT_VARIABLES.values()):
            env.pop(name, None)
        env.update({PORT_VARIABLES[name]: str(port) for name, port in ports.items()})
        if database_url:
            env["DATABASE_URL"] = database_url
        env.update(extra or {})
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack.cli", "run"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = f"http://127.0.0.1:{ports['edge']}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "\n".join(self.lines)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("not ready:\n" + "\n".join(self.lines))

    def stop(self, sig: int) -> int:
        """Signal the launcher; every process it started must be gone afterwards."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self.reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"left running: {alive}"
        return code


def _wait_for_mail(directory: Path, to: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(directory.glob("*.eml")):
            text = path.read_text()
            if f"To: {to}" in text:
                return text
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} in {directory}")


def _auth_call(port: int, metadata: tuple[tuple[str, str], ...] = (), tls_dir: Path | None = None) -> grpc.StatusCode:
    """ListUsers on auth: in plaintext, or with the `operator` certificate of `tls_dir`."""
    tls = None if tls_dir is None else load_tls(CommonSettings(FSG_TLS_DIR=str(tls_dir)), "operator")  # type: ignore[call-arg]
    with probe_channel(f"127.0.0.1:{port}", tls) as channel:
        try:
            auth_pb2_grpc.AuthStub(channel).ListUsers(auth_pb2.ListUsersRequest(page_size=1), metadata=metadata,
                                                      timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_make_run_end_to_end(data_root: Path) -> None:
    ports = {name: free_port() for name in ("pg", "edge", "auth", "billing", "generation", "sim", "stripe",
                                            "mailsink")}
    first = Run(data_root, ports)
    try:
        first.wait_ready()
        output = "\n".join(first.lines)
        url_line = next(line for line in first.lines if line.startswith("DATABASE_URL="))
        assert re.fullmatch(rf"DATABASE_URL=postgresql://postgres:\*\*\*\*@127\.0\.0\.1:{ports['pg']}/filmscript",
                            url_line)
        match = re.search(r"^✅ Admin user created with API key: (admin_[0-9a-f]{64})$", output, re.M)
        assert match, output
        assert "   Save this API key securely - it won't be shown again!" in first.lines
        admin = {"X-API-Key": match.group(1)}
        assert "SIMULATOR" in output.upper()
        created = httpx.post(f"{first.url}/api/admin/create-user", headers=admin,
                             json={"username": "johndoe", "email": "john@example.com", "initialCredits": 100})
        assert created.status_code == 201, created.text
        user_key = created.json()["user"]["api_key"]
        structure = httpx.post(f"{first.url}/api/generate-structure", headers={"X-API-Key": user_key}, timeout=30,
                               json={"storyInput": {"title": "Night Train"}, "template": "hero-journey"})
        assert structure.status_code == 200, structure.text
        remaining = structure.json()["usage"]["credits_remaining"]
        # `make run` shows readable console lines (LOG_FORMAT=console), the named event's fields after the message.
        refused = httpx.get(f"{first.url}/api/my-stats", headers={"X-API-Key": "user_" + "0" * 64})
        assert refused.status_code == 401
        shown = (" WARNING edge edge.security: rejected API key user_000000… on /api/my-stats event=auth.failed "
                 f"reason=invalid key_prefix=user_000000 request_id={refused.headers['X-Request-ID']}")
        _wait_for(lambda: any(line.endswith(shown) for line in first.lines), "the console auth.failed line")
        # The default threshold is 100 credits: that first call took johndoe below it, and the alert mail lands
        # in the local mail sink, where the launcher's banner says.
        mail_dir = data_root.resolve() / "mail"
        assert f"LOCAL MAIL SINK at smtp://127.0.0.1:{ports['mailsink']}" in output and str(mail_dir) in output
        mail = _wait_for_mail(mail_dir, "john@example.com")
        assert f"running low: {remaining} left" in mail
        # Without STRIPE_SECRET_KEY, purchases go to a local fake Stripe, said loudly; its webhook credits.
        assert "LOCAL FAKE STRIPE" in output and f"127.0.0.1:{ports['stripe']}" in output
        card = httpx.post(f"http://127.0.0.1:{ports['stripe']}/v1/payment_methods", auth=("sk_test_localstripe", ""),
                          data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                                "card[exp_year]": "2035", "card[cvc]": "123"})
        assert card.status_code == 200, card.text
        bought = httpx.post(f"{first.url}/api/purchases", headers={"X-API-Key": user_key}, timeout=30,
                            json={"pack": "starter", "paymentMethod": card.json()["id"]})
        assert bought.status_code == 201 and bought.json()["paymentStatus"] == "succeeded", bought.text
        deadline = time.monotonic() + 20
        while httpx.get(f"{first.url}/api/my-purchases", headers={"X-API-Key": user_key}
                        ).json()["purchases"][0]["state"] != "succeeded":
            assert time.monotonic() < deadline, "the webhook never credited the purchase"
            time.sleep(0.2)
        bought_remaining = httpx.get(f"{first.url}/api/my-stats", headers={"X-API-Key": user_key}
                                     ).json()["user"]["credits_remaining"]
        assert Decimal(str(bought_remaining)) == Decimal(str(remaining)) + 500
        # localstripe sends no refund events: `fsg local-stripe refund` refunds there and delivers Stripe's.
        intent = httpx.get(f"{first.url}/api/my-purchases", headers={"X-API-Key": user_key}
                           ).json()["purchases"][0]["paymentIntentId"]
        refund = subprocess.run([sys.executable, "-m", "devstack.cli", "local-stripe", "refund", intent],
                                env=first.env, capture_output=True, text=True, timeout=60)
        assert refund.returncode == 0 and '"outcome":"applied"' in refund.stdout, refund.stdout + refund.stderr
        remaining = httpx.get(f"{first.url}/api/my-stats", headers={"X-API-Key": user_key}
                              ).json()["user"]["credits_remaining"]
        assert Decimal(str(remaining)) == Decimal(str(structure.json()["usage"]["credits_remaining"]))
        token_file = data_root / "service-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        tls_dir = data_root / "tls"
        assert {key.name: key.stat().st_mode & 0o777 for key in tls_dir.glob("*.key")} == {
            f"{name}.key": 0o600 for name in ("ca", "auth", "billing", "generation", "edge", "operator", "postgres")}
        bearer = (("authorization", f"Bearer {token}"),)
        assert _auth_call(ports["auth"], bearer) == grpc.StatusCode.UNAVAILABLE  # plaintext: no handshake
        assert _auth_call(ports["auth"], tls_dir=tls_dir) == grpc.StatusCode.UNAUTHENTICATED
        assert _auth_call(ports["auth"], bearer, tls_dir) == grpc.StatusCode.OK
    finally:
        first.stop(signal.SIGTERM)
    assert token not in "\n".join(first.lines)
    assert (data_root / "localstripe" / "webhook-secret").read_text().strip() not in "\n".join(first.lines)
    assert not EmbeddedPostgres(data_root, ports["pg"]).is_running()
    assert match.group(1) not in "\n".join(first.lines[first.lines.index(match.group(0)) + 1:])

    second = Run(data_root, ports)
    try:
        second.wait_ready()
        output = "\n".join(second.lines)
        assert "Admin user created" not in output and "admin_" not in output
        assert "exists" in output
        stats = httpx.get(f"{second.url}/api/my-stats", headers={"X-API-Key": user_key})
        assert stats.status_code == 200 and stats.json()["user"]["credits_remaining"] == remaining
        assert stats.json()["usage"]["total_requests"] == 1
        # Operator commands find the embedded database by themselves (no DATABASE_URL in their env).
        operator_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DATA_DIR": str(data_root)}
        reconcile = subprocess.run([sys.executable, "-m", "services.billing.cli", "reconcile"], env=operator_env,
                                   capture_output=True, text=True, timeout=60)
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
        assert "every purchase what Stripe says" in reconcile.stdout  # it found the local fake Stripe by itself
        rotated = subprocess.run([sys.executable, "-m", "services.auth.cli", "rotate-admin-key"], env=operator_env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        new_admin = re.search(r"(admin_[0-9a-f]{64})", rotated)
        assert new_admin and new_admin.group(1) != admin["X-API-Key"]
        assert httpx.get(f"{second.url}/api/admin/users", headers=admin).status_code == 401
        assert httpx.get(f"{second.url}/api/admin/users", headers={"X-API-Key": new_admin.group(1)}).status_code == 200
        assert token_file.read_text().strip() == token  # kept across restarts
        bearer = (("authorization", f"Bearer {token}"),)
        assert _auth_call(ports["auth"], bearer, data_root / "tls") == grpc.StatusCode.OK
    finally:
        second.stop(signal.SIGINT)
    assert token not in "\n".join(second.lines)
    assert not EmbeddedPostgres(data_root, ports["pg"]).is_running()


def test_make_run_uses_database_url_and_starts_no_postgres(tmp_path: Path, stack: Stack) -> None:
    """Against a database another deployment (the session stack) already runs on: it is given the service
    roles' passwords, as every launcher or bootstrap against one database must be (roles belong to the
    cluster; a new password would lock out the running services' new connections)."""
    ports = {name: free_port() for name in ("pg", "edge", "auth", "billing", "generation", "sim", "stripe",
                                            "mailsink")}
    passwords = {f"{service.upper()}_DB_PASSWORD": secret
                 for service, secret in role_passwords(stack.data_dir, {}).items()}
    run = Run(tmp_path, ports, database_url=stack.dsn, extra=passwords)
    try:
        run.wait_ready()
        output = "\n".join(run.lines)
        assert "DATABASE_URL=postgresql://postgres:****@127.0.0.1:" in output
        assert stack.dsn not in output  # the password never reaches the terminal
        assert "exists" in output and "Admin user created" not in output
        assert not (tmp_path / "postgres").exists()
        assert httpx.get(f"{run.url}/api/admin/users", headers={"X-API-Key": stack.admin_key}).status_code == 200
    finally:
        run.stop(signal.SIGTERM)
    assert stack.postgres is not None and stack.postgres.is_running()  # not ours to stop


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll until `predicate` holds (a line is printed after the answer it is about)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
