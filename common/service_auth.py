"""Internal gRPC authentication: one shared service token, sent as `authorization: Bearer <token>`.

The services are reachable by anything that can open a socket to them, and they trust the user ids they
are given, so every call must prove it comes from one of our processes:

- servers demand the token (`ServiceTokenInterceptor`, installed by `common.grpc_server.create_server`)
  and answer UNAUTHENTICATED, with a fixed message that never echoes what was sent, when it is missing
  or wrong. Only `grpc.health.v1.Health` is exempt, so orchestrators' probes need no secret; reflection
  is not (it lists the whole API).
- clients send it on every call of a channel built by `authenticated_channel`, so no stub or call site
  can forget it.

Rotation: the configuration may hold several tokens. Servers accept any of them, clients send the first;
put the new token first everywhere (servers accept both meanwhile), then drop the old one.
A process with no token refuses to start unless FSG_SERVICE_AUTH=off says so explicitly.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from common.grpc_channel import WrappedChannel
from common.grpc_target import channel_options
from common.settings import CommonSettings
from common.tls import GrpcTls

log = logging.getLogger(__name__)

HEADER = "authorization"
#: Methods under this prefix need no token (health probes from orchestrators and `make run`).
EXEMPT_PREFIX = "/grpc.health.v1.Health/"
#: What an unauthenticated caller is told: fixed, so nothing it sent (or we hold) is reflected back.
REFUSAL = "missing or invalid service token"
#: Shorter secrets are refused at start-up: a placeholder like "changeme" must not pass for a token.
MIN_TOKEN_LENGTH = 32
#: Printable ASCII without spaces or commas: valid in an HTTP/2 header, and the comma separates tokens.
_TOKEN_CHARS = re.compile(r"[!-+\--~]+")


class ServiceAuthConfigError(RuntimeError):
    """The service token configuration is missing or unusable; the process must not start."""


@dataclass(frozen=True)
class ServiceTokens:
    """The tokens a server accepts; clients send `current` (the first)."""

    accepted: tuple[str, ...]

    @property
    def current(self) -> str:
        return self.accepted[0]

    def __repr__(self) -> str:  # never show the secrets in a traceback or log line
        return f"ServiceTokens(<{len(self.accepted)} redacted>)"


def parse_tokens(text: str, source: str) -> ServiceTokens:
    """Tokens separated by commas or newlines; blank lines and `#` comment lines are skipped.

    Errors name the `source` and the token's position, never its value.
    """
    tokens: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        tokens += [part.strip() for part in line.split(",") if part.strip()]
    if not tokens:
        raise ServiceAuthConfigError(f"{source} holds no service token")
    for position, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(token):
            raise ServiceAuthConfigError(
                f"service token #{position} in {source} is unusable: it must be at least {MIN_TOKEN_LENGTH} "
                "printable ASCII characters without spaces or commas (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
    return ServiceTokens(tuple(dict.fromkeys(tokens)))


def load_tokens(settings: CommonSettings) -> ServiceTokens | None:
    """The configured tokens, or None when FSG_SERVICE_AUTH=off. FSG_SERVICE_TOKEN_FILE wins over
    FSG_SERVICE_TOKEN when both are set. Raises `ServiceAuthConfigError` when nothing usable is set."""
    if settings.service_auth == "off":
        log.warning("FSG_SERVICE_AUTH=off: internal gRPC calls are NOT authenticated (development only)")
        return None
    if settings.service_token_file is not None:
        path = settings.service_token_file
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServiceAuthConfigError(
                f"cannot read FSG_SERVICE_TOKEN_FILE {path}: {type(exc).__name__}"
            ) from None
        return parse_tokens(text, f"FSG_SERVICE_TOKEN_FILE {path}")
    if settings.service_token is not None:
        return parse_tokens(settings.service_token.get_secret_value(), "FSG_SERVICE_TOKEN")
    raise ServiceAuthConfigError(
        "no service token configured: set FSG_SERVICE_TOKEN_FILE (a file holding the token) or "
        "FSG_SERVICE_TOKEN; `make run` generates one in DATA_DIR/service-token. "
        "FSG_SERVICE_AUTH=off disables internal authentication (development only)."
    )


def ensure_token_file(path: Path) -> Path:
    """Create `path` holding a fresh random token (mode 0600) unless it exists; return it.

    Kept across restarts so processes started at different times agree. Never prints the token.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return path


# -- server side ---------------------------------------------------------------------------------------

async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSAL)


# One refusal per call shape, built once: the shape must match the method's or streaming calls misbehave.
# No deserializers: a refused request is never parsed.
_REFUSALS: dict[tuple[bool, bool], grpc.RpcMethodHandler] = {
    (False, False): grpc.unary_unary_rpc_method_handler(_refuse),
    (False, True): grpc.unary_stream_rpc_method_handler(_refuse),
    (True, False): grpc.stream_unary_rpc_method_handler(_refuse),
    (True, True): grpc.stream_stream_rpc_method_handler(_refuse),
}


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with `authorization: Bearer <an accepted token>` (or to Health).

    On the hot path of every call: one scan of the (short) metadata tuple and one constant-time
    comparison per accepted token; the expected header values are built once here.
    """

    def __init__(self, tokens: ServiceTokens) -> None:
        self._expected = tuple(f"Bearer {token}" for token in tokens.accepted)

    def authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == HEADER:
                if not isinstance(value, str):
                    return False
                matched = False
                for expected in self._expected:  # every token, no early exit: timing reveals nothing
                    try:
                        matched |= hmac.compare_digest(value, expected)
                    except TypeError:  # non-ASCII text cannot be one of ours
                        return False
                return matched
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if self.authorized(handler_call_details.invocation_metadata) or method.startswith(EXEMPT_PREFIX):  # type: ignore[attr-defined]
            return await continuation(handler_call_details)
        log.warning("refused unauthenticated gRPC call to %s", method)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: refuse too, rather than tell strangers what exists
            return _REFUSALS[(False, False)]
        return _REFUSALS[(bool(handler.request_streaming), bool(handler.response_streaming))]


# -- client side ---------------------------------------------------------------------------------------

class _WithToken:
    """A call object factory (multicallable) that adds the token to every call's metadata."""

    __slots__ = ("_inner", "_metadata")

    def __init__(self, inner: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._inner = inner
        self._metadata = metadata

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        merged = (*tuple(metadata), *self._metadata) if metadata else self._metadata
        return self._inner(*args, metadata=merged, **kwargs)


def authenticated_channel(
    target: str, tokens: ServiceTokens | None, options: Sequence[tuple[str, Any]] = (), *,
    tls: GrpcTls | None = None,
) -> grpc.aio.Channel:
    """A channel whose every call carries the current service token (plain when auth is off), over mutual
    TLS when `tls` is given (`common.tls.load_tls`): it presents that certificate and accepts only a server
    whose certificate the deployment's CA signed for the host in `target`. Every channel pings its
    connections and spreads calls over a target's replicas (`common.grpc_target`)."""
    all_options = channel_options(target, list(options))
    if tls is None:
        channel = grpc.aio.insecure_channel(target, options=all_options)
    else:
        channel = grpc.aio.secure_channel(target, tls.channel_credentials(), options=all_options)
    if tokens is None:
        return channel
    metadata = ((HEADER, f"Bearer {tokens.current}"),)
    return WrappedChannel(channel, lambda inner: _WithToken(inner, metadata))


def tokens_or_exit(settings: CommonSettings) -> ServiceTokens | None:
    """`load_tokens` for a process's start-up: a configuration error ends it with one clear line."""
    try:
        return load_tokens(settings)
    except ServiceAuthConfigError as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None
