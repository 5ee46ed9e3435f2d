"""Settings shared by every process; each process subclasses `CommonSettings` with its own env prefix.

Shared names (DATABASE_URL, DATA_DIR, LOG_LEVEL) are read without a prefix, as the guide spells them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_AUTH_PORT = 50061
DEFAULT_BILLING_PORT = 50062
DEFAULT_GENERATION_PORT = 50063
DEFAULT_SIMULATOR_PORT = 3090
DEFAULT_EDGE_PORT = 3000
DEFAULT_PG_PORT = 55432
DEFAULT_LOCALSTRIPE_PORT = 8420
DEFAULT_MAILSINK_PORT = 2525


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    #: The fields a deployment (deploy/k8s, docker-compose.yml) must set for this process: their defaults fit
    #: only `make run` on one machine (loopback addresses, a launcher that hands out the secrets).
    #: tests/deploy/ holds every manifest to it, and to the names the class reads.
    DEPLOY_REQUIRED: ClassVar[tuple[str, ...]] = ()

    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(Path(".data"), validation_alias="DATA_DIR")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    #: "json": one JSON object per line (production, the default); "console": `ts LEVEL service logger:
    #: message key=value` (`make run` sets it). Same schema either way (common/logging.py).
    log_format: Literal["json", "console"] = Field("json", validation_alias="LOG_FORMAT")
    migrations_dir: Path = Field(REPO_ROOT / "migrations", validation_alias="MIGRATIONS_DIR")
    db_pool_min: int = Field(2, validation_alias="DB_POOL_MIN", ge=1)
    db_pool_max: int = Field(10, validation_alias="DB_POOL_MAX", ge=1)
    #: The service token(s) every internal gRPC call carries (`authorization: Bearer <token>`), inline:
    #: several may be given, comma- or newline-separated, for rotation (servers accept any, clients send
    #: the first). See `common.service_auth.load_tokens`, which reads these three settings.
    service_token: SecretStr | None = Field(None, validation_alias="FSG_SERVICE_TOKEN")
    #: The same, from a file (one token per line; `#` comments allowed). When both are set the FILE wins:
    #: it is what `make run`, the tests and container secrets hand over, so a stray inline value in a
    #: shell cannot override it.
    service_token_file: Path | None = Field(None, validation_alias="FSG_SERVICE_TOKEN_FILE")
    #: "on" (default): a process with no token refuses to start. "off": no token is demanded or sent —
    #: an explicit, loud opt-out for throwaway experiments only.
    service_auth: Literal["on", "off"] = Field("on", validation_alias="FSG_SERVICE_AUTH")
    #: Internal TLS (common/tls.py): a directory as `fsg certs` makes it, each process taking `ca.crt` and its
    #: own `<identity>.crt`/`.key` from it ...
    tls_dir: Path | None = Field(None, validation_alias="FSG_TLS_DIR")
    #: ... or the files one by one (they win over the directory's). None of the four set: plaintext gRPC.
    tls_ca: Path | None = Field(None, validation_alias="FSG_TLS_CA")
    tls_cert: Path | None = Field(None, validation_alias="FSG_TLS_CERT")
    tls_key: Path | None = Field(None, validation_alias="FSG_TLS_KEY")
    #: Honour the fault points of common/faults.py (crash or stall at a named step). Tests only.
    fault_injection: bool = Field(False, validation_alias="FSG_FAULT_INJECTION")

    @field_validator("tls_dir", "tls_ca", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        """`FSG_TLS_DIR=` (compose's `${FSG_TLS_DIR:-}`) means unset, not the current directory."""
        return None if value == "" else value

    def dsn(self) -> str:
        """The database URL; every service needs one (the launcher provides it for the embedded server)."""
        if self.database_url is None:
            raise RuntimeError("DATABASE_URL is not set (run the stack with `make run`, which provides it)")
        return self.database_url.get_secret_value()
