"""Finding the database: DATABASE_URL when set, else the embedded server the launcher started.

The launcher writes `DATA_DIR/postgres.json` while the embedded server runs, so operator commands
(`fsg-auth`, `fsg-billing`, …) work with no environment at all on a machine that ran `make run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from common.logging import redact
from common.settings import CommonSettings

CONNECTION_FILE = "postgres.json"


def embedded_dsn(data_dir: Path) -> str | None:
    """The embedded server's URL if its connection file exists."""
    path = data_dir / CONNECTION_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return (build_dsn(info["user"], info["password"], info["host"], int(info["port"]), info["database"])
            + str(info.get("options", "")))  # `?sslmode=verify-full&sslrootcert=…` when it runs with TLS


def build_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    return f"postgresql://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{quote(database)}"


def resolve_dsn(settings: CommonSettings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    found = embedded_dsn(settings.data_dir)
    if found is None:
        raise SystemExit("DATABASE_URL is not set and no embedded database is running (start it with `make run`)")
    return found


def mask_dsn(dsn: str) -> str:
    """The URL with its password replaced by ****, for printing."""
    return redact(dsn)
