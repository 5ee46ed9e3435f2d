"""Expires pending holds whose deadline passed (a crashed edge, a lost connection): their credits
return to the user and a failed usage row records what happened."""

from __future__ import annotations

import asyncio
import logging

from services.billing.repository import BillingRepository

log = logging.getLogger(__name__)

#: The first sweep after start-up looks back this far (a year), later sweeps only a day.
STARTUP_WINDOW_SECONDS = 365 * 86400.0
STEADY_WINDOW_SECONDS = 86400.0


async def sweep_forever(repository: BillingRepository, interval: float) -> None:
    window = STARTUP_WINDOW_SECONDS
    while True:
        try:
            expired = await repository.sweep_expired(window)
            if expired:
                log.info("expired %d pending holds", expired)
            window = STEADY_WINDOW_SECONDS
        except Exception:  # the database may be away; try again next round
            log.warning("hold sweep failed; retrying in %.1fs", interval, exc_info=True)
        await asyncio.sleep(interval)
