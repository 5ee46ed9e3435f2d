"""Edge settings: PORT as in the guide, EDGE_* for the rest, and where the services listen."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import (
    DEFAULT_AUTH_PORT,
    DEFAULT_BILLING_PORT,
    DEFAULT_EDGE_PORT,
    DEFAULT_GENERATION_PORT,
    CommonSettings,
)


class EdgeSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", extra="ignore", populate_by_name=True)
    DEPLOY_REQUIRED = ("host", "service_token", "auth_addr", "billing_addr", "generation_addr")

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_EDGE_PORT, validation_alias="PORT")
    #: HTTPS: the edge's certificate (with its chain) and key, PEM (EDGE_TLS_CERT, EDGE_TLS_KEY). Both or
    #: neither; neither = plain HTTP (behind a TLS-terminating load balancer, or locally).
    https_cert: Path | None = Field(None, validation_alias="EDGE_TLS_CERT")
    https_key: Path | None = Field(None, validation_alias="EDGE_TLS_KEY")
    auth_addr: str = Field(f"127.0.0.1:{DEFAULT_AUTH_PORT}", validation_alias="AUTH_ADDR")
    billing_addr: str = Field(f"127.0.0.1:{DEFAULT_BILLING_PORT}", validation_alias="BILLING_ADDR")
    generation_addr: str = Field(f"127.0.0.1:{DEFAULT_GENERATION_PORT}", validation_alias="GENERATION_ADDR")
    #: Deadline for quick service calls (auth, billing).
    rpc_timeout_seconds: float = Field(5.0, gt=0)
    #: Deadline for a whole Claude call through the generation service. Keep it above the generation
    #: service's GENERATION_RETRY_BUDGET_SECONDS (all its attempts and waits) plus time to save the result.
    generation_timeout_seconds: float = Field(180.0, gt=0)
    #: How long the edge keeps retrying a Commit/Release while billing is unreachable before giving up
    #: (then the hold expires by itself and the user is not charged).
    settle_retry_seconds: float = Field(20.0, ge=0)
    #: A hold lives EDGE_GENERATION_TIMEOUT_SECONDS + EDGE_SETTLE_RETRY_SECONDS + this long, so a live call
    #: always posts before its hold's deadline (after it, billing refuses the post and the hold expires).
    hold_margin_seconds: float = Field(60.0, ge=0)
    #: Cache validated keys this long, only while auth's revocation stream is live (rotations and
    #: disables evict at once). 0 = ask auth on every request.
    key_cache_seconds: float = Field(60.0, ge=0)
    workers: int = Field(1, ge=1)
    #: Prepare, Reserve and Commit calls that arrive while one of their kind is in flight go together in the
    #: next batch RPC, up to this many (no call waits on a timer; see common/coalesce.py). 0 = one RPC per call.
    batch_max: int = Field(64, ge=0, le=1000)
    #: How long an idle client connection is kept open. Longer than the usual client pool expiry (httpx: 5 s)
    #: and load-balancer idle timeouts (60 s), so a client never reuses a connection the edge is closing at
    #: that moment (which it sees as a reset, not an answer).
    keep_alive_seconds: int = Field(75, ge=1)
    #: One access-log line per request (method, path, status, duration, request id, user id; never the
    #: query string or a header), on the `edge.access` logger at INFO.
    access_log: bool = True
    #: A paid call whose input + output tokens exceed this is logged as the `usage.high_tokens` event
    #: (EDGE_HIGH_TOKENS_THRESHOLD; README, "Logging"). The kinds' default output caps are 1,000 to 4,000
    #: tokens on prompts of a few thousand, so the default flags calls well past the usual.
    high_tokens_threshold: int = Field(20_000, ge=0)
    #: Larger request bodies are refused with 413 before they are parsed (EDGE_MAX_BODY_BYTES).
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    #: The same for a bulk-import CSV (POST /api/admin/import), EDGE_MAX_IMPORT_BYTES: 10,000 users are
    #: about 0.7 MB, so the default leaves room for 100,000 (the most rows one file may hold).
    max_import_bytes: int = Field(10 * 1024 * 1024, ge=1)
    #: Deadline of each batch call of a bulk import or export (EDGE_BULK_RPC_TIMEOUT_SECONDS). Generous: a
    #: CreateUsers that times out after committing loses the only copy of its users' keys.
    bulk_rpc_timeout_seconds: float = Field(60.0, gt=0)

    @field_validator("https_cert", "https_key", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        """`EDGE_TLS_CERT=` (compose's `${EDGE_TLS_CERT:-}`) means unset, not the current directory."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _https_pair(self) -> EdgeSettings:
        if (self.https_cert is None) != (self.https_key is None):
            raise ValueError("EDGE_TLS_CERT and EDGE_TLS_KEY go together: set both for HTTPS, or neither for HTTP")
        return self
