"""Billing operator CLI (`fsg-billing`): serve, reconcile the ledger, grant and inspect credits, bulk import and
export of users and credits (services/billing/cli_bulk.py), and look after the alert outbox's dead letters
(`fsg-billing alerts …`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import typer
from pydantic import SecretStr

from common.cli import run_with_repository
from common.local_stripe import discover
from common.money import for_json
from services.billing import cli_bulk
from services.billing.alerts.repository import AlertRepository
from services.billing.purchases import StripeDifference, purchases_from_settings
from services.billing.repository import KEEP, BillingRepository, LimitSetting, ReconcileReport
from services.billing.settings import BillingSettings

app = typer.Typer(help="Billing service: credits, holds and the ledger.", no_args_is_help=True)
cli_bulk.register(app)
alerts_app = typer.Typer(help="Low-credit alerts: the deliveries that kept failing (dead letters), and sending "
                              "them again.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
T = TypeVar("T")


def _with_repo(action: Callable[[BillingRepository], Awaitable[T]]) -> T:
    settings = BillingSettings()
    return run_with_repository(
        settings, lambda pool: BillingRepository(pool, limit_defaults=settings.limit_defaults), action
    )


def _with_alerts(action: Callable[[AlertRepository], Awaitable[T]]) -> T:
    return run_with_repository(BillingSettings(), AlertRepository, action)


def _limit_option(value: str | None) -> LimitSetting:
    """CLI text → a limit: absent = keep, "default" = the service default, a number (0 = no limit)."""
    if value is None:
        return KEEP
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise typer.BadParameter("a whole number (0 = no limit) or 'default'") from exc


@app.command()
def serve() -> None:
    """Run the Billing gRPC server."""
    from services.billing.server import main

    main()


async def _reconcile(pool: asyncpg.Pool, settings: BillingSettings, stripe_days: int | None, with_stripe: bool
                     ) -> tuple[ReconcileReport, list[StripeDifference] | None]:
    report = await BillingRepository(pool).reconcile()
    purchases = purchases_from_settings(pool, settings)
    try:
        if not with_stripe or settings.stripe_secret_key is None:
            return report, None
        return report, await purchases.check_with_stripe(days=stripe_days)
    finally:
        await purchases.close()


@app.command()
def reconcile(
    stripe: bool = typer.Option(True, "--stripe/--no-stripe",
                                help="also check purchases against Stripe (when STRIPE_SECRET_KEY is set)"),
    stripe_days: int | None = typer.Option(None, help="check only purchases changed within this many days"),
) -> None:
    """Re-derive every balance from the ledger, check every hold against its rows, every purchase against its
    rows and what Stripe says was paid, refunded and disputed, and the conservation of credits over all
    accounts; report each difference. Exit 1 if any."""
    settings = BillingSettings()
    local = discover(settings.data_dir.resolve()) if settings.stripe_secret_key is None else None
    if local is not None:
        typer.echo(f"Stripe: the local fake `make run` started ({local['STRIPE_API_BASE']})")
        settings = settings.model_copy(update={"stripe_secret_key": SecretStr(local["STRIPE_SECRET_KEY"]),
                                               "stripe_api_base": local["STRIPE_API_BASE"],
                                               "stripe_webhook_secret": SecretStr(local["STRIPE_WEBHOOK_SECRET"])})
    report, stripe_differences = run_with_repository(
        settings, lambda pool: pool, lambda pool: _reconcile(pool, settings, stripe_days, stripe))
    for d in report.accounts:
        typer.echo(
            f"user {d.user_id}: available {d.available} vs ledger {d.ledger_available}; "
            f"held {d.held} vs pending holds {d.pending_held}; "
            f"holds_open {d.holds_open} vs pending holds {d.pending_holds} (listed {d.listed_pending_holds}); "
            f"purchased {d.total_credits_purchased} vs ledger {d.ledger_purchased}; "
            f"usage ledger {d.ledger_usage} vs usage_logs {d.logged_usage}; "
            f"ledger rows consistent: {d.rows_consistent}; owed {d.owed}"
        )
    for h in report.holds:
        typer.echo(f"hold {h.hold_id} (user {h.user_id}, {h.amount}, {h.outcome or 'pending'} {h.charge or ''}): "
                   f"{h.problem}")
    for p in report.purchases:
        typer.echo(f"purchase {p.purchase_id} (user {p.user_id}): {p.problem}")
    for s in stripe_differences or []:
        typer.echo(f"purchase {s.purchase_id} (user {s.user_id}, {s.payment_intent_id}): {s.problem}")
    for a in report.attention:
        typer.echo(f"needs an operator: purchase {a.purchase_id} (user {a.user_id}): {a.problem}", err=True)
    if stripe_differences is None:
        typer.echo("purchases were not checked against Stripe (STRIPE_SECRET_KEY is not set, or --no-stripe)")
    c = report.conservation
    if not c.holds:
        typer.echo(f"conservation: credited {c.credited} - charged {c.charged} vs in accounts {c.in_accounts}; "
                   f"held {c.held} vs pending {c.pending}; posted {c.posted} vs logged {c.logged}")
    if not report.clean or stripe_differences:
        purchases = len(report.purchases) + len(stripe_differences or [])
        typer.echo(f"reconcile: {len(report.accounts)} account(s), {len(report.holds)} hold(s) and {purchases} "
                   f"purchase difference(s){'' if c.holds else '; credits are not conserved'}", err=True)
        raise typer.Exit(1)
    typer.echo("reconcile: every balance matches the ledger, every hold and purchase its rows"
               f"{', every purchase what Stripe says' if stripe_differences is not None else ''}, "
               "and credits are conserved")


@app.command()
def grant(
    user_id: int,
    credits: str,
    transaction_type: str = typer.Option("grant", "--type", help="grant | purchase | refund | adjustment"),
    notes: str = "",
    idempotency_key: str = typer.Option("", help="defaults to a fresh UUID"),
) -> None:
    """Add credits to a user's account (an adjustment may be negative)."""
    result = _with_repo(
        lambda repo: repo.grant(
            user_id, credits, transaction_type=transaction_type, notes=notes, created_by="cli",
            idempotency_key=idempotency_key or uuid.uuid4().hex, idempotency_scope="cli",
        )
    )
    typer.echo(f"transaction {result.transaction_id}: available {for_json(result.balance.available)}")


@app.command()
def balance(user_id: int) -> None:
    """Show a user's available, held and purchased credits."""
    b = _with_repo(lambda repo: repo.balance(user_id))
    typer.echo(
        f"available {for_json(b.available)} held {for_json(b.held)} "
        f"purchased {for_json(b.total_credits_purchased)} unlimited {b.unlimited}"
    )


@app.command()
def limits(
    user_id: int,
    requests_per_minute: str | None = typer.Option(None, "--rpm", help="N, 0 (no limit) or 'default'"),
    max_concurrent: str | None = typer.Option(None, "--concurrent", help="N, 0 (no limit) or 'default'"),
) -> None:
    """Show a user's rate limits, or change them (options left out are kept)."""
    rpm, concurrent = _limit_option(requests_per_minute), _limit_option(max_concurrent)
    if rpm is KEEP and concurrent is KEEP:
        result = _with_repo(lambda repo: repo.limits(user_id))
    else:
        result = _with_repo(lambda repo: repo.set_limits(user_id, requests_per_minute=rpm, max_concurrent=concurrent))

    def show(stored: int | None, effective: int) -> str:
        shown = "no limit" if effective == 0 else str(effective)
        return f"{shown} ({'default' if stored is None else 'set'})"

    typer.echo(
        f"requests per minute {show(result.requests_per_minute, result.effective_requests_per_minute)}; "
        f"max concurrent {show(result.max_concurrent, result.effective_max_concurrent)}; "
        f"in flight {result.holds_open}{'; exempt (unlimited account)' if result.exempt else ''}"
    )


@app.command("sweep")
def sweep() -> None:
    """Expire every pending hold past its deadline now."""
    n = _with_repo(lambda repo: repo.sweep_expired())
    typer.echo(f"expired {n} hold(s)")


@alerts_app.command("dead-letters")
def dead_letters(limit: int = typer.Option(1000, min=1, help="at most this many, oldest first")) -> None:
    """List the alert deliveries that failed every attempt (BILLING_ALERT_MAX_ATTEMPTS)."""
    letters = _with_alerts(lambda alerts: alerts.dead_letters(limit))
    if not letters:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'delivery':>8}  {'alert':>7}  {'user':>6}  {'type':<22} {'channel':<8} {'tries':>5}  "
               f"{'failed at (UTC)':<19}  last error")
    for d in letters:
        typer.echo(f"{d.delivery_id:>8}  {d.alert_id:>7}  {d.user_id:>6}  {d.kind.event_type:<22} {d.channel:<8} "
                   f"{d.attempts:>5}  {d.failed_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {d.last_error}")
    typer.echo(f"{len(letters)} dead letter(s); `fsg-billing alerts replay DELIVERY …` (or --all) sends them again")


@alerts_app.command()
def replay(
    delivery_ids: list[int] | None = typer.Argument(None, help="the dead letters' delivery ids"),
    every: bool = typer.Option(False, "--all", help="every dead letter"),
) -> None:
    """Send dead letters again, each with a fresh set of attempts; a running billing server's dispatcher sends
    them (within BILLING_ALERT_POLL_SECONDS). Exit 1 if an id given is not a dead letter."""
    ids = list(delivery_ids or [])
    if bool(ids) == every:
        raise typer.BadParameter("give the delivery ids, or --all")
    replayed = _with_alerts(lambda alerts: alerts.replay(ids, every=every))
    typer.echo(f"replaying {len(replayed)} dead letter(s)" + (f": {', '.join(map(str, replayed))}" if replayed else ""))
    missing = sorted(set(ids) - set(replayed))
    if missing:
        typer.echo(f"not dead letters (unknown, pending or delivered): {', '.join(map(str, missing))}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
