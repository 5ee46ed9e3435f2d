"""The alert outbox's data access: each user's settings, the credit-limit event, and the deliveries' states
(claim, delivered, failed, skipped, dead letters, replay). The events themselves are written by SQL in the
transaction that moved the balance (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import asyncpg

from common.errors import DB_DOWN
from common.logging import get_logger
from common.money import ZERO, InvalidAmount, parse_credits
from common.webhook_url import InvalidWebhookUrl, check_webhook_url
from services.billing.alerts import queries
from services.billing.alerts.events import Alert, Kind
from services.billing.alerts.policy import RetryPolicy
from services.billing.alerts.webhook import new_secret
from services.billing.errors import InvalidBillingRequest, InvalidCredits
from services.billing.queries import ENSURE_ACCOUNT
from services.billing.repository import KEEP, Keep

_events = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    user_id: int
    threshold: Decimal | None  # the user's own; None = the default
    default_threshold: Decimal
    webhook_url: str | None
    armed: bool  # the next drop below the threshold alerts
    balance: Decimal  # owned: available + held
    unlimited: bool  # unlimited accounts never alert
    webhook_secret: str | None = None  # only in the answer that issued it

    @property
    def effective_threshold(self) -> Decimal:
        return self.default_threshold if self.threshold is None else self.threshold


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds the lease of, with what sending it needs."""

    delivery_id: int
    channel: str  # email | webhook
    attempt: int  # 1-based; fences the outcome
    alert: Alert
    webhook_url: str | None
    webhook_secret: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery_id: int
    channel: str
    attempts: int
    last_error: str
    failed_at: datetime
    alert_id: int
    user_id: int
    kind: Kind
    created_at: datetime


def _threshold(value: Decimal | str) -> Decimal:
    try:
        return parse_credits(value, allow_zero=True)
    except InvalidAmount as exc:
        raise InvalidCredits(f"Invalid threshold: {exc}") from exc


async def _settings(conn: asyncpg.Connection, user_id: int) -> AlertSettings:
    row = await conn.fetchrow(queries.SETTINGS, user_id)
    if row is None:  # no account yet: the defaults
        default = await conn.fetchval(queries.DEFAULT_THRESHOLD)
        return AlertSettings(user_id, None, default if default is not None else ZERO, None, True, ZERO, False)
    default = row["default_threshold"] if row["default_threshold"] is not None else ZERO
    return AlertSettings(user_id=user_id, threshold=row["threshold"], default_threshold=default,
                         webhook_url=row["webhook_url"], armed=row["armed"], balance=row["balance"],
                         unlimited=row["unlimited"])


def _webhook_url(value: str) -> str:
    try:
        return check_webhook_url(value)
    except InvalidWebhookUrl as exc:
        raise InvalidBillingRequest(str(exc)) from exc


class AlertRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set_default_threshold(self, threshold: Decimal) -> None:
        await self._pool.execute(queries.SET_DEFAULT_THRESHOLD, _threshold(threshold))

    # -- a user's settings -------------------------------------------------------------------------
    async def settings(self, user_id: int) -> AlertSettings:
        async with self._pool.acquire() as conn:
            return await _settings(conn, user_id)

    async def update(self, user_id: int, *, threshold: Decimal | str | Keep | None = KEEP,
                     webhook_url: str | Keep | None = KEEP, rotate_secret: bool = False) -> AlertSettings:
        """Change what is given (KEEP: leave it; a None threshold: follow the default; a None URL: no webhook,
        and its secret is forgotten). A URL set where there was none, or `rotate_secret`, issues a new signing
        secret, answered once in `webhook_secret`. A changed threshold re-arms the alert.

        Changes of one user's settings run one at a time (the settings row is locked); the account's row is not
        locked, so a change never waits for the user's calls, and the alert trigger (which holds the account's
        lock, then takes this row's) never waits in a cycle with it."""
        new_threshold = threshold if threshold is KEEP or threshold is None else _threshold(threshold)
        new_url = webhook_url if webhook_url is KEEP or webhook_url is None else _webhook_url(webhook_url)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(ENSURE_ACCOUNT, user_id)
            await conn.execute(queries.ENSURE_SETTINGS, user_id)
            stored = await conn.fetchrow(queries.LOCK_SETTINGS, user_id)
            before = await _settings(conn, user_id)
            threshold_after = stored["threshold"] if new_threshold is KEEP else new_threshold
            url_after = stored["webhook_url"] if new_url is KEEP else new_url
            if rotate_secret and url_after is None:
                raise InvalidBillingRequest("There is no webhook URL to rotate the signing secret of")
            issued = None
            if url_after is None:
                secret_after = None
            elif stored["webhook_secret"] is None or rotate_secret:
                secret_after = issued = new_secret()
            else:
                secret_after = stored["webhook_secret"]
            effective_after = before.default_threshold if threshold_after is None else threshold_after
            await conn.execute(queries.UPDATE_SETTINGS, user_id, threshold_after, url_after, secret_after,
                               effective_after != before.effective_threshold)
            after = await _settings(conn, user_id)
        return replace(after, webhook_secret=issued)

    # -- the credit-limit event --------------------------------------------------------------------
    async def credit_limit_reached(self, user_id: int, required: Decimal, endpoint: str) -> int | None:
        """A metered call was refused for insufficient credits: record the event (once per arming) and log
        it as one structured line. Never fails the refusal it follows: a lost event is logged instead."""
        try:
            alert_id: int | None = await self._pool.fetchval(queries.CREDIT_LIMIT, user_id, required, endpoint)
        except (asyncpg.PostgresError, *DB_DOWN):
            _events.warning("alerts.credit_limit_reached", message="credit-limit alert not recorded (the database "
                            "did not take it)", user_id=user_id, endpoint=endpoint, required=str(required),
                            recorded=False, exc_info=True)
            return None
        if alert_id is not None:
            _events.info("alerts.credit_limit_reached", message="credit-limit alert recorded", alert_id=alert_id,
                         user_id=user_id, endpoint=endpoint, required=str(required), recorded=True)
        return alert_id

    # -- the outbox's deliveries -------------------------------------------------------------------
    async def claim(self, limit: int, lease_seconds: float) -> list[Claimed]:
        rows = await self._pool.fetch(queries.CLAIM, limit, lease_seconds)
        return [Claimed(delivery_id=r["id"], channel=r["channel"], attempt=r["attempts"], alert=Alert.from_row(r),
                        webhook_url=r["webhook_url"], webhook_secret=r["webhook_secret"]) for r in rows]

    async def delivered(self, claimed: Claimed) -> None:
        await self._pool.execute(queries.DELIVERED, claimed.delivery_id, claimed.attempt)

    async def failed(self, claimed: Claimed, error: str, policy: RetryPolicy) -> bool:
        """Record a failed attempt; True when it was the last one (the delivery is now a dead letter)."""
        dead = policy.exhausted(claimed.attempt)
        delay = 0.0 if dead else policy.delay(claimed.attempt)
        await self._pool.execute(queries.FAILED, claimed.delivery_id, claimed.attempt, dead, delay, error[:1000])
        return dead

    async def skipped(self, claimed: Claimed, reason: str) -> None:
        await self._pool.execute(queries.SKIPPED, claimed.delivery_id, claimed.attempt, reason)

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        rows = await self._pool.fetch(queries.DEAD_LETTERS, limit)
        return [DeadLetter(delivery_id=r["id"], channel=r["channel"], attempts=r["attempts"],
                           last_error=r["last_error"] or "", failed_at=r["failed_at"], alert_id=r["alert_id"],
                           user_id=r["user_id"], kind=Kind(r["kind"]), created_at=r["created_at"]) for r in rows]

    async def replay(self, delivery_ids: list[int], *, every: bool = False) -> list[int]:
        """Make these dead letters (or all of them) pending again, with a fresh set of attempts; answers the ids
        that were dead letters. The dispatcher of any running billing replica sends them."""
        rows = await self._pool.fetch(queries.REPLAY, delivery_ids, every)
        return sorted(r["id"] for r in rows)
