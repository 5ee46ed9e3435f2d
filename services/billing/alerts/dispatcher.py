"""The dispatcher: a background task of every billing server that delivers the alert outbox.

Each round it claims the due deliveries (FOR UPDATE SKIP LOCKED, each with a lease: see queries.CLAIM), so
with several billing replicas each delivery is sent by one of them; sends them concurrently; and records each
outcome: delivered, failed (retried after an exponential, jittered backoff; a dead letter after the last
attempt) or skipped (nowhere to send it). Mail and webhook are separate deliveries of one event: one failing
never blocks or repeats the other.

Delivery is at least once: a dispatcher that dies after sending and before recording it leaves the delivery to
be sent again when its lease ends. Every delivery of an event carries the event's id (the webhook body's `id`
and `FSG-Event-Id` header, the mail's Message-ID) so a receiver can drop the second.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

import grpc
import httpx2

from common.faults import CRASH_EXIT_CODE
from protos import auth_pb2, auth_pb2_grpc
from services.billing.alerts import mail, webhook
from services.billing.alerts.mail import SmtpConfig
from services.billing.alerts.policy import RetryPolicy
from services.billing.alerts.repository import AlertRepository, Claimed

log = logging.getLogger(__name__)

#: Deliveries claimed per round (a round runs them concurrently).
BATCH = 20
#: The dispatcher's fault points (BILLING_ALERT_FAULT, honoured only with FSG_FAULT_INJECTION; tests only):
#: end the process once a round has claimed deliveries, before sending them; or claim nothing at all, as a
#: dispatcher that has not come round yet.
CRASH_BEFORE_DELIVERY = "crash_before_delivery"
STALL = "stall"
FAULTS = frozenset({CRASH_BEFORE_DELIVERY, STALL})


class Undeliverable(Exception):
    """There is nowhere to send this delivery (no SMTP server, the webhook removed, the user gone): it is
    recorded as skipped, not retried."""


@dataclass(frozen=True)
class DispatchSettings:
    poll_seconds: float
    lease_seconds: float
    policy: RetryPolicy
    smtp: SmtpConfig | None
    mail_from: str
    smtp_timeout_seconds: float
    webhook_timeout_seconds: float
    fault: str = ""  # one of FAULTS, or ""


class Dispatcher:
    def __init__(self, alerts: AlertRepository, auth: auth_pb2_grpc.AuthStub, settings: DispatchSettings) -> None:
        self._alerts = alerts
        self._auth = auth
        self._settings = settings
        self._http = httpx2.AsyncClient(follow_redirects=False)

    async def run_forever(self) -> None:
        """Deliver until cancelled: a full batch is followed at once by the next; otherwise wait a poll."""
        if self._settings.smtp is None:
            log.warning("SMTP_URL is not set: alert mails are not sent (recorded as skipped)")
        else:
            log.info("alert mails go through %s", self._settings.smtp.display)
        try:
            while True:
                try:
                    handled = await self.run_once()
                except Exception:  # the database may be away; try again next round
                    log.warning("alert dispatch failed; retrying in %.1fs", self._settings.poll_seconds, exc_info=True)
                    handled = 0
                if handled < BATCH:
                    await asyncio.sleep(self._settings.poll_seconds)
        finally:
            await self._http.aclose()

    async def run_once(self) -> int:
        """One round; answers how many deliveries it handled."""
        if self._settings.fault == STALL:
            return 0
        claimed = await self._alerts.claim(BATCH, self._settings.lease_seconds)
        if claimed and self._settings.fault == CRASH_BEFORE_DELIVERY:
            log.warning("fault injection: %s, exiting", CRASH_BEFORE_DELIVERY)
            os._exit(CRASH_EXIT_CODE)
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _deliver(self, item: Claimed) -> None:
        what = (f"alert_id={item.alert.id} type={item.alert.kind.event_type} user_id={item.alert.user_id} "
                f"channel={item.channel} delivery_id={item.delivery_id} attempt={item.attempt}")
        try:
            if item.channel == "email":
                await self._send_mail(item)
            else:
                await self._post_webhook(item)
        except Undeliverable as exc:
            await self._alerts.skipped(item, str(exc))
            log.info("alert skipped: %s reason=%s", what, exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            dead = await self._alerts.failed(item, error, self._settings.policy)
            if dead:
                log.warning("alert dead letter: %s error=%s (`fsg-billing alerts replay %d` sends it again)",
                            what, error, item.delivery_id)
            else:
                log.info("alert delivery failed, will retry: %s error=%s", what, error)
        else:
            await self._alerts.delivered(item)
            log.info("alert delivered: %s", what)

    async def _send_mail(self, item: Claimed) -> None:
        smtp = self._settings.smtp
        if smtp is None:
            raise Undeliverable("SMTP_URL is not set")
        try:
            user = await self._auth.GetUser(auth_pb2.GetUserRequest(id=item.alert.user_id),
                                            timeout=self._settings.smtp_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise Undeliverable("the user no longer exists") from exc
            raise RuntimeError(f"auth answered {exc.code().name}") from exc
        if not user.email:
            raise Undeliverable("the user has no email address")
        message = mail.compose(item.alert, to=user.email, username=user.username, sender=self._settings.mail_from)
        await asyncio.to_thread(mail.send, smtp, message, self._settings.smtp_timeout_seconds)

    async def _post_webhook(self, item: Claimed) -> None:
        if item.webhook_url is None or item.webhook_secret is None:
            raise Undeliverable("the user removed the webhook")
        await webhook.post(self._http, item.webhook_url, item.webhook_secret, item.alert,
                           self._settings.webhook_timeout_seconds)
