"""The operator CLI's channels to auth and billing, for `fsg-billing import|export` (the edge has its own,
edge/clients.py). The CLI is a client of both services, like the edge: billing's own process never writes
auth's table.

Where the services are: AUTH_ADDR and BILLING_ADDR (as `make run` sets them for the edge). The service token:
FSG_SERVICE_TOKEN_FILE or FSG_SERVICE_TOKEN as for every process, and with neither set, the file `make run`
keeps in DATA_DIR/service-token, so the command works as is on a machine running `make run`. TLS likewise:
FSG_TLS_* as for every process (identity `operator`), else DATA_DIR/tls when `make run` made it there (unless
FSG_TLS=off, as for `make run`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.grpc_server import MAX_MESSAGE_BYTES
from common.service_auth import ServiceTokens, authenticated_channel, load_tokens
from common.settings import DEFAULT_AUTH_PORT, DEFAULT_BILLING_PORT, CommonSettings
from common.tls import GrpcTls, load_tls
from protos import auth_pb2_grpc, billing_pb2_grpc

TOKEN_FILE = "service-token"
#: Where `make run` keeps the deployment's certificates (`fsg certs`), under DATA_DIR.
TLS_DIR = "tls"
_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


class BulkClientSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="BULK_", extra="ignore", populate_by_name=True)

    auth_addr: str = Field(f"127.0.0.1:{DEFAULT_AUTH_PORT}", validation_alias="AUTH_ADDR")
    billing_addr: str = Field(f"127.0.0.1:{DEFAULT_BILLING_PORT}", validation_alias="BILLING_ADDR")
    #: Deadline of each call (BULK_RPC_TIMEOUT_SECONDS). Generous: a call that times out after its work
    #: committed loses its answer, and CreateUsers' answer holds the only copy of the new keys.
    rpc_timeout_seconds: float = Field(60.0, gt=0)
    #: As for `make run`: "off" means plaintext even when DATA_DIR/tls exists (a stack run with FSG_TLS=off).
    internal_tls: Literal["on", "off"] = Field("on", validation_alias="FSG_TLS")


def client_tokens(settings: BulkClientSettings) -> ServiceTokens | None:
    """The configured token, else the one `make run` keeps in DATA_DIR; raises ServiceAuthConfigError when
    there is none."""
    configured = settings.service_token is not None or settings.service_token_file is not None
    kept = settings.data_dir / TOKEN_FILE
    if settings.service_auth == "on" and not configured and kept.exists():
        settings = settings.model_copy(update={"service_token_file": kept})
    return load_tokens(settings)


def client_tls(settings: BulkClientSettings) -> GrpcTls | None:
    """The configured certificates, else the `operator` pair `make run` keeps in DATA_DIR/tls; None (plaintext)
    when there are neither. Raises `common.tls.TlsConfigError` on half a configuration."""
    configured = any(value is not None for value in (settings.tls_dir, settings.tls_ca, settings.tls_cert,
                                                     settings.tls_key))
    kept = settings.data_dir / TLS_DIR
    if not configured and settings.internal_tls == "on" and (kept / "operator.crt").exists():
        settings = settings.model_copy(update={"tls_dir": kept})
    return load_tls(settings, "operator")


@asynccontextmanager
async def service_stubs(settings: BulkClientSettings) -> AsyncIterator[
    tuple[auth_pb2_grpc.AuthStub, billing_pb2_grpc.BillingStub]
]:
    """Stubs for auth and billing on channels that carry the service token, closed on leaving."""
    tokens, tls = client_tokens(settings), client_tls(settings)
    async with authenticated_channel(settings.auth_addr, tokens, _OPTIONS, tls=tls) as auth, \
            authenticated_channel(settings.billing_addr, tokens, _OPTIONS, tls=tls) as billing:
        yield auth_pb2_grpc.AuthStub(auth), billing_pb2_grpc.BillingStub(billing)
