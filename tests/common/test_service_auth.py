"""Internal gRPC authentication: every service demands the service token, over real sockets against the
real stack; health alone is exempt; refusals never echo a token; a process without a token won't start."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from common.grpc_server import create_server
from common.logging import redact
from common.service_auth import (
    REFUSAL,
    ServiceAuthConfigError,
    ServiceTokens,
    authenticated_channel,
    ensure_token_file,
    load_tokens,
    parse_tokens,
)
from common.settings import REPO_ROOT, CommonSettings
from protos import auth_pb2, auth_pb2_grpc, billing_pb2, billing_pb2_grpc, generation_pb2, generation_pb2_grpc
from tests.stack import Stack

SERVICES = ("auth", "billing", "generation")


def _a_call(service: str, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> Awaitable[Any]:
    """One cheap, read-only call of each service that succeeds when authenticated."""
    kw: dict[str, Any] = {"timeout": 10, "metadata": metadata}
    if service == "auth":
        return auth_pb2_grpc.AuthStub(channel).ListUsers(auth_pb2.ListUsersRequest(page_size=1), **kw)
    if service == "billing":
        return billing_pb2_grpc.BillingStub(channel).UsageTotals(billing_pb2.UsageTotalsRequest(), **kw)
    return generation_pb2_grpc.GenerationStub(channel).ListTemplates(generation_pb2.ListTemplatesRequest(), **kw)


def _other_token() -> ServiceTokens:
    """Well-formed but not the stack's."""
    return ServiceTokens((secrets.token_urlsafe(32),))


@pytest.fixture
async def bare(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    """A channel that sends no token at all (what any stranger on the network can open)."""
    async with grpc.aio.insecure_channel(stack.addr(request.param)) as channel:
        yield channel


async def _refused(call: Awaitable[Any], *secret_values: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == REFUSAL
    text = f"{refused.value.details()} {refused.value.debug_error_string()} {refused.value.trailing_metadata()}"
    for value in secret_values:
        assert value not in text


@pytest.mark.parametrize("bare", SERVICES, indirect=True)
async def test_a_call_without_a_token_is_unauthenticated(bare: grpc.aio.Channel, request: pytest.FixtureRequest,
                                                         stack: Stack) -> None:
    await _refused(_a_call(request.node.callspec.params["bare"], bare), stack.tokens.current)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_wrong_token_is_unauthenticated_and_not_echoed(stack: Stack, service: str) -> None:
    wrong = _other_token()
    async with authenticated_channel(stack.addr(service), wrong) as channel:
        await _refused(_a_call(service, channel), wrong.current, stack.tokens.current)
    # The right token with anything appended or cut off, without "Bearer", or as another header is wrong too.
    right = stack.tokens.current
    near_misses = [("authorization", f"Bearer {right}x"), ("authorization", f"Bearer {right[:-1]}"),
                   ("authorization", right), ("authorization", f"Basic {right}"), ("x-token", f"Bearer {right}")]
    async with grpc.aio.insecure_channel(stack.addr(service)) as channel:
        for header in near_misses:
            await _refused(_a_call(service, channel, (header,)), right)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_right_token_works(stack: Stack, service: str) -> None:
    async with stack.channel(service) as channel:
        await _a_call(service, channel)


@pytest.mark.parametrize("bare", SERVICES, indirect=True)
async def test_health_needs_no_token(bare: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _reflection_refused(channel: grpc.aio.Channel, *secret_values: str) -> None:
    """Read before writing: a grpc.aio client that is still writing when the server ends the call may
    report INTERNAL instead of the server's status (grpc/grpc#36066), which would make this flaky."""
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=10)
    await _refused(call.read(), *secret_values)


@pytest.mark.parametrize("bare", SERVICES, indirect=True)
async def test_reflection_without_a_token_is_refused(bare: grpc.aio.Channel, stack: Stack) -> None:
    await _reflection_refused(bare, stack.tokens.current)


@pytest.mark.parametrize("bare", ["auth"], indirect=True)
async def test_the_revocation_stream_without_a_token_is_refused(bare: grpc.aio.Channel) -> None:
    stream = auth_pb2_grpc.AuthStub(bare).WatchRevocations(auth_pb2.WatchRevocationsRequest(), timeout=10)
    await _refused(stream.read())


async def test_every_call_shape_carries_the_token(stack: Stack) -> None:
    """Server-streaming (revocations) and bidi (reflection) calls are authenticated too, not only unary,
    and a caller's own metadata is added to the token, not put in its place."""
    async with stack.channel("auth") as channel:
        await _a_call("auth", channel, (("x-request-id", "r-1"),))
        stream = auth_pb2_grpc.AuthStub(channel).WatchRevocations(auth_pb2.WatchRevocationsRequest(), timeout=10)
        first = await stream.read()
        assert first.user_id == 0  # "the stream is live"
        stream.cancel()
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "fsg.auth.v1.Auth" in names


@pytest.mark.parametrize("bare", ["billing"], indirect=True)
async def test_unknown_methods_are_refused_before_they_are_revealed(bare: grpc.aio.Channel, stack: Stack) -> None:
    await _refused(bare.unary_unary("/fsg.billing.v1.Billing/NoSuchMethod")(b"", timeout=10))
    async with stack.channel("billing") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await channel.unary_unary("/fsg.billing.v1.Billing/NoSuchMethod")(b"", timeout=10)
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- rotation: a server configured with several tokens accepts each (a real server on a real socket) -----

@pytest.fixture
async def rotating_server() -> AsyncIterator[tuple[str, ServiceTokens]]:
    tokens = parse_tokens(f"{secrets.token_urlsafe(32)}\n# the old one, until every client has the new\n"
                          f"{secrets.token_urlsafe(32)}, {secrets.token_urlsafe(32)}", "test")
    server, port, _health = create_server(lambda _server: None, [], "127.0.0.1:0", tokens=tokens, tls=None)
    await server.start()
    try:
        yield f"127.0.0.1:{port}", tokens
    finally:
        await server.stop(None)


async def _list_services(target: str, tokens: ServiceTokens | None) -> list[str]:
    async with authenticated_channel(target, tokens) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        return [s.name async for r in responses for s in r.list_services_response.service]


async def test_a_server_accepts_every_configured_token(rotating_server: tuple[str, ServiceTokens]) -> None:
    target, tokens = rotating_server
    assert len(tokens.accepted) == 3
    for token in tokens.accepted:
        assert "grpc.health.v1.Health" in await _list_services(target, ServiceTokens((token,)))
    async with authenticated_channel(target, _other_token()) as channel:
        await _reflection_refused(channel)


# -- configuration -------------------------------------------------------------------------------------

def _settings(**env: str) -> CommonSettings:
    return CommonSettings(**env)  # type: ignore[arg-type]  # validation aliases, as the environment spells them


def test_tokens_come_from_the_file_first_then_the_variable(tmp_path: Path) -> None:
    inline, in_file = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    (tmp_path / "t").write_text(f"{in_file}\n")
    both = load_tokens(_settings(FSG_SERVICE_TOKEN=inline, FSG_SERVICE_TOKEN_FILE=str(tmp_path / "t")))
    assert both is not None and both.accepted == (in_file,)
    only_inline = load_tokens(_settings(FSG_SERVICE_TOKEN=f"{inline},{in_file}"))
    assert only_inline is not None and only_inline.current == inline and only_inline.accepted == (inline, in_file)
    assert load_tokens(_settings(FSG_SERVICE_AUTH="off", FSG_SERVICE_TOKEN=inline)) is None


@pytest.mark.parametrize("bad", ["", "# only a comment\n", "changeme", "x" * 31, "a" * 20 + " " + "b" * 20])
def test_missing_or_placeholder_tokens_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(ServiceAuthConfigError) as refused:
        load_tokens(_settings(FSG_SERVICE_TOKEN=bad))
    for part in bad.split():
        assert part not in str(refused.value)


def test_no_token_at_all_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceAuthConfigError, match="no service token configured"):
        load_tokens(_settings())
    with pytest.raises(ServiceAuthConfigError, match="cannot read FSG_SERVICE_TOKEN_FILE"):
        load_tokens(_settings(FSG_SERVICE_TOKEN_FILE=str(tmp_path / "missing")))


def test_generated_token_file_is_private_and_kept(tmp_path: Path) -> None:
    path = ensure_token_file(tmp_path / "data" / "service-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert parse_tokens(first, "generated").current == first.strip()
    assert ensure_token_file(path).read_text() == first


@pytest.mark.parametrize("module", ["services.auth.server", "services.billing.server",
                                    "services.generation.server", "edge"])
def test_a_process_without_a_token_refuses_to_start(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSG_SERVICE_")}
    env.update(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", ANTHROPIC_API_KEY="unused", LOG_LEVEL="INFO")
    done = subprocess.run([sys.executable, "-m", module], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no service token configured" in done.stdout + done.stderr


def test_log_redaction_hides_the_service_token() -> None:
    token = secrets.token_urlsafe(32)
    for line in (f"metadata: authorization: Bearer {token}", f"('authorization', 'bearer {token}')"):
        cleaned = redact(line)
        assert token not in cleaned
        assert "earer …" in cleaned  # the header stays readable, only the secret goes
