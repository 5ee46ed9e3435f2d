"""Runs the Billing gRPC server: `python -m services.billing.server` (or `fsg-billing serve`)."""

from __future__ import annotations

import logging

import grpc
import uvloop
from grpc_health.v1 import health

from common.db import create_pool, wait_for_schema
from common.grpc_server import create_server as create_grpc_server
from common.grpc_server import serve_until_signalled
from common.logging import setup_logging
from common.service_auth import ServiceTokens, authenticated_channel, tokens_or_exit
from common.tls import GrpcTls, tls_or_exit
from protos import auth_pb2_grpc, billing_pb2, billing_pb2_grpc
from services.billing.alerts.dispatcher import Dispatcher, DispatchSettings
from services.billing.alerts.repository import AlertRepository
from services.billing.purchases import Purchases, purchases_from_settings
from services.billing.repository import BillingRepository
from services.billing.servicer import BillingServicer
from services.billing.settings import BillingSettings
from services.billing.sweeper import sweep_forever

log = logging.getLogger(__name__)
SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name


def create_server(
    repository: BillingRepository, purchases: Purchases, alerts: AlertRepository, address: str, *,
    tokens: ServiceTokens | None, tls: GrpcTls | None, fault_injection: bool = False,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """The billing server, not yet started, and its bound port (tests bind port 0)."""
    servicer = BillingServicer(repository, purchases, alerts, fault_injection=fault_injection)
    return create_grpc_server(
        lambda server: billing_pb2_grpc.add_BillingServicer_to_server(servicer, server), [SERVICE_NAME], address,
        tokens=tokens, tls=tls,
    )


def dispatch_settings(settings: BillingSettings) -> DispatchSettings:
    return DispatchSettings(
        poll_seconds=settings.alert_poll_seconds, lease_seconds=settings.alert_lease_seconds,
        policy=settings.retry_policy, smtp=settings.smtp, mail_from=settings.alert_mail_from,
        smtp_timeout_seconds=settings.alert_smtp_timeout_seconds,
        webhook_timeout_seconds=settings.alert_webhook_timeout_seconds,
        fault=settings.alert_fault if settings.fault_injection else "",
    )


async def run(settings: BillingSettings) -> None:
    tokens = tokens_or_exit(settings)  # before anything else: no token, no start
    tls = tls_or_exit(settings, "billing")  # nor with half a TLS configuration
    pool = await create_pool(settings.dsn(), min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                             application_name="billing")
    await wait_for_schema(pool, settings.migrations_dir)
    alerts = AlertRepository(pool)
    await alerts.set_default_threshold(settings.alert_default_threshold)
    repository = BillingRepository(
        pool, default_ttl_seconds=settings.hold_ttl_seconds, recent_days=settings.recent_usage_days,
        limit_defaults=settings.limit_defaults, key_retention_hours=settings.idempotency_retention_hours,
        credit_limits=alerts,
    )
    purchases = purchases_from_settings(pool, settings)
    if settings.stripe_secret_key is None:
        log.warning("STRIPE_SECRET_KEY is not set: credit purchases are refused")
    server, port, health_servicer = create_server(repository, purchases, alerts, settings.address, tokens=tokens,
                                                  tls=tls, fault_injection=settings.fault_injection)
    # Alert mails go to the address auth keeps: the dispatcher asks auth, with the service token (and, with
    # TLS on, billing's own certificate: it is a client of auth as well as a server).
    auth_channel = authenticated_channel(settings.auth_addr, tokens, tls=tls)
    dispatcher = Dispatcher(alerts, auth_pb2_grpc.AuthStub(auth_channel), dispatch_settings(settings))
    log.info("billing gRPC listening on %s:%d", settings.host, port)
    try:
        await serve_until_signalled(
            server, health_servicer, [SERVICE_NAME], pool,
            background=[lambda: sweep_forever(repository, settings.sweep_interval_seconds), dispatcher.run_forever],
        )
    finally:
        await auth_channel.close()
        await purchases.close()


def main() -> None:
    settings = BillingSettings()
    setup_logging("billing", settings.log_level, settings.log_format)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
