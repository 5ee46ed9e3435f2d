"""Billing's housekeeping: expire pending holds whose deadline passed (a crashed edge, a lost connection),
so their credits return to the user and a failed usage row records what happened; and, hourly, forget
replay results past the idempotency retention and void markers past a day."""

from __future__ import annotations

import asyncio
import logging
import time

from services.billing.repository import BillingRepository

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0


async def sweep_forever(repository: BillingRepository, interval: float) -> None:
    """Every `interval`, drain every expired pending hold (however old: nothing is left behind after an
    outage or a backlog); every hour, purge."""
    next_purge = time.monotonic()
    while True:
        try:
            expired = await repository.sweep_expired()
            if expired:
                log.info("expired %d pending holds", expired)
            if time.monotonic() >= next_purge:
                results, markers = await repository.purge()
                if results or markers:
                    log.info("purged %d replay results and %d void markers", results, markers)
                next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        except Exception:  # the database may be away; try again next round
            log.warning("hold sweep failed; retrying in %.1fs", interval, exc_info=True)
        await asyncio.sleep(interval)
