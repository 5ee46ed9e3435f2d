"""Least privilege in the database: each service connects as its own role, and no role may rewrite the
ledger. The ledger, the holds, their resolutions and the usage log are append-only in the database itself,
whatever a service's code does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from common.db_roles import SERVICE_ROLES
from tests.stack import Stack

#: credit_alerts: the alert outbox's events are facts too, written once by the movement that caused them.
APPEND_ONLY = ["credit_transactions", "credit_holds", "credit_hold_resolutions", "usage_logs", "credit_alerts"]
#: What each role must not even read: another service's tables.
FOREIGN = {
    "auth": ["credit_accounts", "credit_transactions", "projects", "project_parts", "credit_alert_settings"],
    "billing": ["user_accounts", "projects", "project_parts"],
    "generation": ["user_accounts", "credit_accounts", "credit_transactions", "credit_holds", "usage_logs",
                   "credit_alerts", "credit_alert_settings", "credit_alert_deliveries"],
}


@pytest.fixture(params=sorted(SERVICE_ROLES))
async def as_role(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    conn = await asyncpg.connect(stack.role_dsns[request.param])
    try:
        yield request.param, conn
    finally:
        await conn.close()


async def test_each_service_connects_as_its_own_role(db: asyncpg.Connection) -> None:
    rows = await db.fetch("SELECT DISTINCT application_name, usename FROM pg_stat_activity "
                          "WHERE application_name = ANY($1)", list(SERVICE_ROLES))
    assert {r["application_name"]: r["usename"] for r in rows} == SERVICE_ROLES


async def test_no_role_may_update_or_delete_the_ledger(as_role: tuple[str, asyncpg.Connection]) -> None:
    _, conn = as_role
    for table in APPEND_ONLY:
        for statement in (f"UPDATE {table} SET created_at = created_at",
                          f"DELETE FROM {table}", f"TRUNCATE {table}"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)


async def test_no_role_reads_another_services_tables_or_runs_ddl(as_role: tuple[str, asyncpg.Connection]) -> None:
    service, conn = as_role
    for table in FOREIGN[service]:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT 1 FROM {table} LIMIT 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CREATE TABLE intruder (x integer)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("ALTER TABLE schema_migrations ADD COLUMN x integer")
