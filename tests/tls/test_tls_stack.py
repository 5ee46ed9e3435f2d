"""TLS everywhere, on a stack of its own started with it: the edge serves HTTPS with the deployment's
certificate, and every gRPC port speaks only mutual TLS (a certificate signed by the deployment's CA, and
the service token on top).

What a stranger sees is checked at each service: no certificate, a certificate from another CA, a server
name the certificate does not carry, and one of our certificates without the token are all refused.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.service_auth import REFUSAL, authenticated_channel
from common.settings import REPO_ROOT, CommonSettings
from common.tls import GrpcTls, load_tls
from devstack.certs import ensure_certs
from protos import billing_pb2, billing_pb2_grpc
from tests.alerts.support import ALERT_SETTINGS, MailSink, text, wait_port
from tests.bulk.support import cli
from tests.generation.test_endpoints import STORY, assert_charged
from tests.helpers import UserFactory
from tests.stack import Stack, free_port

SERVICES = ("auth", "billing", "generation")


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """With a mail sink and the default threshold at 100 credits, so a user's first call sends billing to
    auth (over its own mTLS channel) for the address of a low-credit mail."""
    sink_port = free_port()
    settings = {**ALERT_SETTINGS, "BILLING_ALERT_DEFAULT_THRESHOLD": "100",
                "SMTP_URL": f"smtp://127.0.0.1:{sink_port}"}
    running = Stack(tmp_path_factory.mktemp("tls-stack"), tls=True, settings=settings)
    try:
        running.start()
        running.start_process("mailsink", [sys.executable, "-m", "devstack.mailsink"],
                              env={"MAILSINK_PORT": str(sink_port)})
        wait_port(sink_port)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def https(tls_stack: Stack) -> Iterator[httpx.Client]:
    """A client that trusts the deployment's CA (and nothing else) for the edge's HTTPS."""
    with httpx.Client(base_url=tls_stack.edge_url, timeout=30, verify=tls_stack.verify) as client:
        yield client


@pytest.fixture
async def books(tls_stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    async with tls_stack.database() as conn:
        yield conn


@pytest.fixture(scope="module")
def stranger_tls(tmp_path_factory: pytest.TempPathFactory) -> GrpcTls:
    """A well-formed certificate and CA, made by the same tool, but of another deployment."""
    other = tmp_path_factory.mktemp("other-ca")
    ensure_certs(other)
    tls = load_tls(CommonSettings(FSG_TLS_DIR=str(other)), "operator")  # type: ignore[call-arg]
    assert tls is not None
    return tls


def _health(channel: grpc.aio.Channel) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(channel)


async def test_a_metered_call_end_to_end_over_https_and_mutual_tls(
    tls_stack: Stack, https: httpx.Client, books: asyncpg.Connection,
) -> None:
    assert tls_stack.edge_url.startswith("https://")
    user = UserFactory(https, {"X-API-Key": tls_stack.admin_key}).create(credits=100)
    response = https.post("/api/generate-structure", headers=user.headers,
                          json={"storyInput": STORY, "template": "three-act"})
    # Charged exactly the price table's amount, the hold posted, the usage row written: every hop (edge →
    # auth, billing, generation over mTLS; generation → Claude simulator) worked.
    await assert_charged(books, user, response, Decimal(100), "/api/generate-structure")
    ready = https.get("/readyz")
    assert ready.status_code == 200, ready.text
    # The call took the user below the 100-credit threshold: billing asked auth for the address (billing's
    # own certificate, as a client) and the mail went out.
    mail = MailSink(tls_stack.data_dir / "mail").wait(user.email, 1)[0]
    assert f"Hello {user.username}," in text(mail) and "below your alert threshold of 100" in text(mail)


def test_the_bulk_cli_finds_the_operator_certificate_by_itself(tls_stack: Stack,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """`fsg-billing export` with no FSG_TLS_* set takes DATA_DIR/tls's operator pair, as after `make run`; given
    another deployment's directory it fails with a clear line, having written nothing."""
    found = cli(tls_stack, "export", "users", env={"FSG_TLS_DIR": ""})
    assert found.returncode == 0, found.stderr
    plaintext = cli(tls_stack, "export", "users", env={"FSG_TLS_DIR": "", "FSG_TLS": "off",
                                                        "BULK_RPC_TIMEOUT_SECONDS": "5"})
    assert plaintext.returncode != 0  # FSG_TLS=off: DATA_DIR/tls ignored, and these services want TLS
    lines = found.stdout.splitlines()
    assert lines[0].startswith("username,email,") and any(line.startswith("admin,") for line in lines[1:])
    other = tmp_path_factory.mktemp("cli-other-ca")
    ensure_certs(other)
    written = other / "users.csv"
    refused = cli(tls_stack, "export", "users", "--output", str(written),
                  env={"FSG_TLS_DIR": str(other), "BULK_RPC_TIMEOUT_SECONDS": "5"})
    assert refused.returncode != 0 and not written.exists()
    assert "export failed, nothing was written" in refused.stderr and "Traceback" not in refused.stderr


def test_the_probe_presents_a_certificate(tls_stack: Stack) -> None:
    """`python -m devstack.healthcheck` (the containers' probe) answers SERVING with a certificate from the
    directory, and fails without one: health shares the mTLS port."""
    def probe(service: str, *args: str, **env: str) -> int:
        environment = {**{k: v for k, v in os.environ.items() if not k.startswith("FSG_TLS")}, **env}
        return subprocess.run([sys.executable, "-m", "devstack.healthcheck", tls_stack.addr(service), *args],
                              cwd=REPO_ROOT, env=environment, capture_output=True, timeout=60).returncode

    for service in SERVICES:
        assert probe(service, FSG_TLS_DIR=str(tls_stack.tls_dir)) == 0
        assert probe(service, service, FSG_TLS_DIR=str(tls_stack.tls_dir)) == 0  # as its own container would
        assert probe(service) == 1


@pytest.mark.parametrize("service", SERVICES)
async def test_our_certificate_and_token_are_served(tls_stack: Stack, service: str) -> None:
    """The positive control for the refusals below: the same call, with the operator certificate, passes."""
    async with tls_stack.channel(service) as channel:
        reply = await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", SERVICES)
async def test_a_client_without_a_certificate_is_refused(tls_stack: Stack, service: str) -> None:
    # Plaintext (what every client did before TLS) …
    async with grpc.aio.insecure_channel(tls_stack.addr(service)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    # … and TLS that trusts our CA but presents no certificate, with the right token: the handshake fails.
    ca = (tls_stack.tls_dir / "ca.crt").read_bytes()
    no_cert = grpc.aio.secure_channel(tls_stack.addr(service), grpc.ssl_channel_credentials(root_certificates=ca))
    try:
        stub = billing_pb2_grpc.BillingStub(no_cert)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await _health(no_cert).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
        if service == "billing":
            with pytest.raises(grpc.aio.AioRpcError) as call:
                await stub.GetBalance(billing_pb2.UserRef(user_id=1), timeout=5,
                                      metadata=(("authorization", f"Bearer {tls_stack.tokens.current}"),))
            assert call.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await no_cert.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_certificate_from_another_ca_is_refused(tls_stack: Stack, stranger_tls: GrpcTls,
                                                        service: str) -> None:
    """Another deployment's operator certificate, trusting our CA for the server (so only the server's check
    of the client can fail), with our token: refused at the handshake."""
    ca = (tls_stack.tls_dir / "ca.crt").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=stranger_tls.key,
                                               certificate_chain=stranger_tls.cert)
    async with grpc.aio.secure_channel(tls_stack.addr(service), credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5,
                                         metadata=(("authorization", f"Bearer {tls_stack.tokens.current}"),))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", SERVICES)
async def test_a_server_is_checked_for_the_name_dialled(tls_stack: Stack, service: str) -> None:
    """Our client refuses a server whose certificate does not carry the name it dialled (here claimed with
    the target-name override: the services' certificates name localhost, 127.0.0.1, ::1 and the service)."""
    tls = tls_stack.grpc_tls
    assert tls is not None
    options = [("grpc.ssl_target_name_override", "billing.example.invalid")]
    async with authenticated_channel(tls_stack.addr(service), tls_stack.tokens, options, tls=tls) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    own_name = [("grpc.ssl_target_name_override", service)]  # the service's own name is on its certificate
    async with authenticated_channel(tls_stack.addr(service), tls_stack.tokens, own_name, tls=tls) as channel:
        reply = await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_token_stays_a_second_factor(tls_stack: Stack) -> None:
    """One of our certificates without the service token gets no further than health."""
    tls = tls_stack.grpc_tls
    async with authenticated_channel(tls_stack.addr("billing"), None, tls=tls) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing_pb2_grpc.BillingStub(channel).GetBalance(billing_pb2.UserRef(user_id=1),
                                                                   timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.details() == REFUSAL
        reply = await _health(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_edge_speaks_https_that_our_ca_verifies(tls_stack: Stack, https: httpx.Client) -> None:
    # Verified against the deployment's CA, for the address dialled (127.0.0.1 is on the edge's certificate).
    assert https.get("/healthz").status_code == 200
    # Not trusted by a client that does not know our CA (the system's store) …
    with pytest.raises(httpx.ConnectError) as untrusted:
        httpx.get(f"{tls_stack.edge_url}/healthz", timeout=5)
    assert isinstance(untrusted.value.__context__, ssl.SSLCertVerificationError) or \
        "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
    # … and plain HTTP to the HTTPS port gets no API answer.
    with pytest.raises(httpx.HTTPError):
        response = httpx.get(tls_stack.edge_url.replace("https://", "http://") + "/healthz", timeout=5)
        response.raise_for_status()


def test_tls_material_is_private(tls_stack: Stack) -> None:
    keys = sorted(Path(tls_stack.tls_dir).glob("*.key"))
    assert {key.stem for key in keys} == {"ca", "auth", "billing", "generation", "edge", "operator", "postgres"}
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in keys)
