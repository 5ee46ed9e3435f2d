"""A credit-limit alert takes its locks in the order every money mover does: the account first, then the
user's alert settings. The full suite once caught the opposite order as a deadlock: grants racing refused
calls through two edges (tests/reliability/test_replicas.py) got 503s, and billing's log said "deadlock
detected". Here the race is played out step by step on two connections, so it cannot pass by luck."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg

from tests.helpers import UserFactory
from tests.stack import Stack

#: Longer than PostgreSQL's deadlock_timeout (1 s): a cycle would be found and broken within it.
WAIT = 3.0


async def test_a_credit_limit_alert_racing_a_grant_does_not_deadlock(alerts_stack: Stack, users: UserFactory,
                                                                      db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    # Armed, so the alert updates (and locks) the user's settings row.
    await db.execute("INSERT INTO credit_alert_settings (user_id, limit_armed) VALUES ($1, true) "
                     "ON CONFLICT (user_id) DO UPDATE SET limit_armed = true", user.id)
    grant = await asyncpg.connect(alerts_stack.dsn)
    alert = await asyncpg.connect(alerts_stack.dsn)
    try:
        tx = grant.transaction()
        await tx.start()
        # A money mover (grant, reserve, settle) holds the account row first …
        await grant.execute("SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE", user.id)
        # … while a refused call records its credit-limit alert.
        recording = asyncio.ensure_future(alert.fetchval("SELECT billing_alert_credit_limit($1, $2, $3)",
                                                         user.id, Decimal(10), "/api/generate-structure"))
        await asyncio.sleep(0.3)  # let the alert take whatever it takes before it waits
        # The mover then touches the settings row, as the balance trigger does when credits arrive.
        await asyncio.wait_for(grant.execute(
            "UPDATE credit_alert_settings SET limit_armed = true WHERE user_id = $1", user.id), WAIT)
        await tx.commit()
        alert_id = await asyncio.wait_for(recording, WAIT)
    finally:
        await grant.close()
        await alert.close()
    # The alert waited for the mover, then recorded once (it re-armed it: the row was armed again above).
    assert alert_id is not None
    assert await db.fetchval("SELECT count(*) FROM credit_alerts WHERE user_id = $1 AND kind = 'credit_limit'",
                             user.id) == 1
