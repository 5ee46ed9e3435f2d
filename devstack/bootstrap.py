"""First-start work shared by `fsg run` and `fsg bootstrap`: migrations and the admin account."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.db import apply_migrations, create_pool
from common.db_roles import enable_logins
from services.auth.repository import AuthRepository
from services.billing.repository import BillingRepository


@dataclass(frozen=True)
class BootstrapResult:
    admin_username: str
    admin_key: str | None  # only on the very first start
    migrations_applied: list[str]


async def bootstrap(dsn: str, migrations_dir: Path, admin_username: str, admin_email: str,
                    role_passwords: dict[str, str] | None = None) -> BootstrapResult:
    """Apply migrations, let the services' roles log in with their passwords, create the admin (once) and
    give it an unlimited account."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn, migrations_dir)
            await enable_logins(conn, role_passwords or {})
        admin, key = await AuthRepository(pool).ensure_admin(admin_username, admin_email)
        await BillingRepository(pool).open_account(admin.id, unlimited=True)
        return BootstrapResult(admin.username, key, applied)
    finally:
        await pool.close()


def admin_lines(result: BootstrapResult) -> list[str]:
    """Exactly the guide's two lines on the first start; a plain notice afterwards."""
    if result.admin_key is not None:
        return [
            f"✅ Admin user created with API key: {result.admin_key}",
            "   Save this API key securely - it won't be shown again!",
        ]
    return [
        f"✅ Admin user '{result.admin_username}' exists (its key is not shown again; "
        "`fsg-auth rotate-admin-key` issues a new one)"
    ]
