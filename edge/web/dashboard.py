"""The usage dashboard: balance and held credits, spend per day (a Chart.js chart), by endpoint and by model,
recent calls, the ledger, buying credits and the low-credit alert. Each number is a REST route's answer
(edge/routes/me.py, reports.py, purchases.py), so the page and the API cannot disagree."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.responses import RedirectResponse

from edge.deps import Clients
from edge.errors import ApiError
from edge.routes import me, purchases, reports
from edge.schemas import AlertsBody, PurchaseBody
from edge.web.common_forms import number, validated
from edge.web.pages import data, day_chart, problem, render
from edge.web.session import Poster, Visitor, WebCaller

router = APIRouter(prefix="/app/dashboard", include_in_schema=False)
#: The dashboard's window, in days.
DAYS = reports.DEFAULT_DAYS
#: The purchase states that are still waiting for Stripe's word.
PENDING = ("pending",)


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


async def _purchases(clients: Clients, who: WebCaller) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = data(await purchases.my_purchases(clients, who.caller, limit=10, before=0))[
        "purchases"]
    return listed


def _pending(listed: list[dict[str, Any]]) -> bool:
    return any(p["state"] in PENDING for p in listed)


async def _page(request: Request, clients: Clients, who: WebCaller, *, status: int = 200,
                notice: str | None = None, error: ApiError | None = None,
                secret: str | None = None) -> Response:
    stats = data(await me.my_stats(clients, who.caller))
    report = data(await reports.my_usage_report(clients, who.caller, days=DAYS))
    calls = data(await reports.my_calls(clients, who.caller, limit=20, before=0, failed=False))
    ledger = data(await me.my_transactions(clients, who.caller, limit=20, before=0))
    packs = data(await purchases.credit_packs(clients))
    alerts = data(await me.my_alerts(clients, who.caller))
    bought = await _purchases(clients, who)
    return render(request, "dashboard.html", who, status=status, stats=stats, report=report, calls=calls["calls"],
                  ledger=ledger["transactions"], packs=packs, alerts=alerts, purchases=bought,
                  pending=_pending(bought), chart_json=day_chart(report), notice=notice,
                  problem=problem(error) if error else None, secret=secret, idem=uuid.uuid4().hex, days=DAYS)


@router.get("")
async def dashboard(request: Request, clients: Clients, who: Visitor) -> Response:
    return await _page(request, clients, who)


@router.get("/purchases")
async def purchase_state(request: Request, clients: Clients, who: Visitor) -> Response:
    """The purchases table alone: the page polls it while a purchase waits for Stripe's webhook. The balance
    tile at the top of the page and the ledger come along (htmx out-of-band swaps), so the page never shows
    two balances."""
    bought = await _purchases(clients, who)
    stats = data(await me.my_stats(clients, who.caller))
    ledger = data(await me.my_transactions(clients, who.caller, limit=20, before=0))
    return render(request, "_purchases.html", who, purchases=bought, pending=_pending(bought), stats=stats,
                  ledger=ledger["transactions"], refreshed=True)


@router.post("/buy")
async def buy(request: Request, clients: Clients, who: Poster) -> Response:
    """Test mode (the local fake Stripe): the test card on the form. With a real Stripe key: Stripe's hosted
    checkout, which comes back to this dashboard."""
    form = await _form(request)
    packs = data(await purchases.credit_packs(clients))
    values: dict[str, Any] = {"pack": form.get("pack", "")}
    if packs["testMode"]:
        values["testCard"] = form.get("test_card", "").strip() or "4242424242424242"
    else:
        back = str(request.url_for("dashboard"))
        values["checkout"] = {"successUrl": back, "cancelUrl": back}
    try:
        started = data(await purchases.create_purchase(validated(PurchaseBody, values), clients, who.caller,
                                                        idempotency_key=form.get("idem") or None))
    except ApiError as exc:
        return await _page(request, clients, who, status=exc.status, error=exc)
    if started.get("checkoutUrl"):
        return RedirectResponse(started["checkoutUrl"], status_code=303)
    return await _page(request, clients, who, notice=f"Purchase of {started['pack']} started: the credits arrive "
                                                     "when the payment is confirmed, in a moment.")


@router.post("/alerts")
async def alerts(request: Request, clients: Clients, who: Poster) -> Response:
    """Blank threshold = the default; blank webhook = none."""
    form = await _form(request)
    threshold = form.get("threshold", "").strip()
    webhook = form.get("webhook_url", "").strip()
    try:
        body = validated(AlertsBody, {"threshold": number(threshold, "threshold") if threshold else None,
                                      "webhookUrl": webhook or None,
                                      "rotateSecret": form.get("rotate_secret") == "on"})
        answer = data(await me.set_my_alerts(body, clients, who.caller))
    except ApiError as exc:
        return await _page(request, clients, who, status=exc.status, error=exc)
    return await _page(request, clients, who, notice="Low-credit alert saved.", secret=answer.get("webhookSecret"))
