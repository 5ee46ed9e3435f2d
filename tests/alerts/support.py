"""What the alert tests share: a stack of their own with a real SMTP server (the mail sink `make run` starts,
as one more process) and fast delivery settings, a real HTTP receiver for webhooks, and polling with a
deadline for what is delivered asynchronously."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import simplejson

from common.settings import REPO_ROOT
from tests.stack import Stack

T = TypeVar("T")
#: Every asynchronous delivery must happen within this (the stack polls every 0.1 s and retries within 0.3 s).
DEADLINE_SECONDS = 30.0

#: The alert settings of the test stack: deliveries polled every 0.1 s; three attempts, 0.1-0.3 s apart;
#: one-second timeouts and a four-second lease (a dispatcher that died mid-delivery delays it by that).
ALERT_SETTINGS = {
    "BILLING_ALERT_DEFAULT_THRESHOLD": "50",
    "BILLING_ALERT_POLL_SECONDS": "0.1",
    "BILLING_ALERT_MAX_ATTEMPTS": "3",
    "BILLING_ALERT_RETRY_BASE_SECONDS": "0.1",
    "BILLING_ALERT_RETRY_MAX_SECONDS": "0.3",
    "BILLING_ALERT_WEBHOOK_TIMEOUT_SECONDS": "1",
    "BILLING_ALERT_SMTP_TIMEOUT_SECONDS": "1",
    "BILLING_ALERT_LEASE_SECONDS": "4",
    "BILLING_ALERT_MAIL_FROM": "FSG Alerts <alerts@fsg.test>",
    "LOG_LEVEL": "INFO",
}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE_SECONDS) -> T:
    """Poll `probe` until it answers something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def wait_port(port: int, timeout: float = 30) -> None:
    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(f"port {port}", listening, timeout)


# -- mail ------------------------------------------------------------------------------------------------
class MailSink:
    """The mails the stack's sink kept (devstack/mailsink.py writes one .eml file each)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def messages(self, to: str) -> list[EmailMessage]:
        found = []
        for path in sorted(self.directory.glob("*.eml")):
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            if message["To"] == to:
                found.append(message)
        return found

    def wait(self, to: str, count: int) -> list[EmailMessage]:
        """Until `to` has at least `count` mails; answers them all."""
        return wait_for(f"{count} mail(s) to {to}", lambda: m if len(m := self.messages(to)) >= count else None)


def text(message: EmailMessage) -> str:
    """The mail's text with its line wrapping undone (every run of whitespace one space)."""
    body = message.get_body(("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


# -- webhooks --------------------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body, parse_float=Decimal))


@dataclass
class Hook:
    """One receiving endpoint: answers `fail_with` to its first `failures` requests (all, when None), 204
    afterwards."""

    path: str
    failures: int | None = 0
    fail_with: int = 500
    received: list[Received] = field(default_factory=list)

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.answered == 204]


class Receiver:
    """A real HTTP server in the test process that records every webhook request."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    hook = receiver.hooks.get(self.path)
                    if hook is None:
                        status = 404
                    else:
                        failing = hook.failures is None or len(hook.received) < hook.failures
                        status = hook.fail_with if failing else 204
                        hook.received.append(Received(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the stdlib's 5 drops connections when a dozen deliveries arrive at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hook(self, failures: int | None = 0, fail_with: int = 500) -> tuple[str, Hook]:
        """A new endpoint: its URL and its record."""
        hook = Hook(f"/hooks/{uuid.uuid4().hex}", failures, fail_with)
        with self.lock:
            self.hooks[hook.path] = hook
        return f"http://127.0.0.1:{self.server.server_address[1]}{hook.path}", hook

    def heal(self, hook: Hook) -> None:
        with self.lock:
            hook.failures = len(hook.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signature(secret: str, received: Received, tolerance: int = 300) -> None:
    """What a receiver does, written here from the README, not with our signing code: `FSG-Signature:
    t=<unix>,v1=<hex>`, hex = HMAC-SHA256(secret, "<t>." + body), and t within `tolerance` of now."""
    parts = dict(item.split("=", 1) for item in received.headers["FSG-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "the signature does not verify"
    assert abs(time.time() - int(parts["t"])) <= tolerance


# -- the stack -------------------------------------------------------------------------------------------
def put_alerts(client: httpx.Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """PUT /api/my-alerts with `body` (Decimals written as exact JSON numbers); answers the 200's body."""
    response = client.put("/api/my-alerts", content=simplejson.dumps(body, use_decimal=True),
                          headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return dict(json.loads(response.text, parse_float=Decimal))


def billing_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`fsg-billing …` as an operator runs it: a separate process with the owner's DATABASE_URL."""
    return subprocess.run([sys.executable, "-m", "services.billing.cli", *args], cwd=REPO_ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=120, check=False)


def restart_billing(stack: Stack, env: dict[str, str] | None = None) -> None:
    """(Stop and) start the stack's billing process, with `env` on top of its usual environment (None: as
    usual), and wait until it serves."""
    if "billing" in stack.processes:
        stack.stop_process("billing")
    stack.process_env.pop("billing", None)
    stack.start_process("billing", stack.commands["billing"], env=env)
    stack.wait_serving("billing")
    stack.wait_ready()


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()
