"""The database roles the services connect as (created and granted by migrations/0011_service_roles.sql).

Each service gets its own role's URL as its DATABASE_URL; the bootstrap gives each role LOGIN and its
password. Only the migrator, an operator's tools and the guide's SQL use the owner's URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from common.service_auth import ensure_token_file

#: Service → its role.
SERVICE_ROLES = {"auth": "fsg_auth", "billing": "fsg_billing", "generation": "fsg_generation"}


def role_passwords(data_dir: Path, given: Mapping[str, SecretStr | None]) -> dict[str, str]:
    """Each service role's password: the one given (AUTH_DB_PASSWORD, BILLING_DB_PASSWORD,
    GENERATION_DB_PASSWORD), else one generated on the first start and kept in DATA_DIR (mode 0600)."""
    passwords: dict[str, str] = {}
    for service in SERVICE_ROLES:
        secret = given.get(service)
        if secret is not None:
            passwords[service] = secret.get_secret_value()
        else:
            passwords[service] = ensure_token_file(data_dir / f"db-password-{service}").read_text().strip()
    return passwords


def service_dsn(owner_dsn: str, service: str, password: str) -> str:
    """The owner's URL (same host, port, database and options) as the service's role."""
    parts = urlsplit(owner_dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(SERVICE_ROLES[service], safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


async def enable_logins(conn: asyncpg.Connection, passwords: dict[str, str]) -> None:
    """Give each service's role LOGIN and its password (idempotent; a new password replaces the old)."""
    for service, password in passwords.items():
        statement = await conn.fetchval("SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
                                        SERVICE_ROLES[service], password)
        await conn.execute(statement)


async def ensure_roles(conn: asyncpg.Connection) -> None:
    """Create each service's role, NOLOGIN, where it is missing (as migration 0011 does): a restore into a new
    cluster needs them before the backup's GRANTs can name them. Roles that exist are left as they are."""
    for role in SERVICE_ROLES.values():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role):
            await conn.execute(await conn.fetchval("SELECT format('CREATE ROLE %I NOLOGIN', $1::text)", role))
