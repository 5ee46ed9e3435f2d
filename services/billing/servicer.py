"""The Billing gRPC servicer: protobuf ⇄ repository. Amounts cross the wire as decimal strings."""

from __future__ import annotations

import asyncio
from datetime import datetime

import grpc

from common import faults
from common.errors import answer_each, item_status
from common.faults import FaultPoint
from common.money import from_wire, to_wire
from common.request_id import each_with_id
from protos import billing_pb2, billing_pb2_grpc
from services.billing.alerts.repository import AlertRepository, AlertSettings
from services.billing.errors import InvalidBillingRequest, InvalidCredits
from services.billing.outcomes import Outcome
from services.billing.purchases import CheckoutPages, Purchase, Purchases
from services.billing.reports import Group, UsageReports
from services.billing.repository import (
    KEEP,
    Balance,
    BillingRepository,
    GrantItem,
    Keep,
    Limits,
    LimitSetting,
    Replay,
    ReserveResult,
    SettleResult,
    UsageRecord,
    UsageRow,
)


def balance_message(balance: Balance) -> billing_pb2.Balance:
    return billing_pb2.Balance(
        user_id=balance.user_id,
        available=to_wire(balance.available),
        held=to_wire(balance.held),
        total_credits_purchased=to_wire(balance.total_credits_purchased),
        unlimited=balance.unlimited,
    )


def usage_record(usage: billing_pb2.Usage) -> UsageRecord:
    try:
        provider_cost = from_wire(usage.provider_cost)
    except ArithmeticError as exc:
        raise InvalidCredits("provider_cost is not a decimal") from exc
    if usage.input_tokens < 0 or usage.output_tokens < 0 or provider_cost < 0:
        raise InvalidBillingRequest("token counts and costs must not be negative")
    return UsageRecord(
        endpoint=usage.endpoint,
        method=usage.method or "POST",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        model=usage.model,
        project_path=usage.project_path,
        request_id=usage.request_id,
        latency_ms=usage.latency_ms,
        error_message=usage.error_message,
        provider_cost=provider_cost,
    )


def settle_message(result: SettleResult) -> billing_pb2.SettleResponse:
    return billing_pb2.SettleResponse(
        outcome=billing_pb2.Outcome.Value(Outcome(result.outcome).name), charged=to_wire(result.charged),
        balance=balance_message(result.balance),
    )


def replay_message(replay: Replay) -> billing_pb2.Replay:
    return billing_pb2.Replay(
        hold_id=replay.hold_id, request_id=replay.request_id, result_json=replay.result_json,
        input_tokens=replay.input_tokens, output_tokens=replay.output_tokens, model=replay.model,
        charged=to_wire(replay.charged), balance=balance_message(replay.balance),
    )


def reserve_message(result: ReserveResult) -> billing_pb2.ReserveResponse:
    return billing_pb2.ReserveResponse(
        ok=result.ok,
        available=to_wire(result.available),
        required=to_wire(result.required),
        unlimited=result.unlimited,
        reason=billing_pb2.Reason.Value(result.reason.proto_name),
        retry_after_seconds=result.retry_after_seconds,
        replay=replay_message(result.replay) if result.replay is not None else None,
    )


def limits_message(limits: Limits) -> billing_pb2.Limits:
    return billing_pb2.Limits(
        user_id=limits.user_id,
        requests_per_minute=limits.requests_per_minute,
        max_concurrent=limits.max_concurrent,
        effective_requests_per_minute=limits.effective_requests_per_minute,
        effective_max_concurrent=limits.effective_max_concurrent,
        holds_open=limits.holds_open,
        exempt=limits.exempt,
    )


def _limit_setting(request: billing_pb2.SetLimitsRequest, name: str) -> LimitSetting:
    """Absent → keep; use_default → None (NULL, the service default); limit → that number (0 = none)."""
    if not request.HasField(name):
        return KEEP
    value: billing_pb2.LimitValue = getattr(request, name)
    which = value.WhichOneof("value")
    if which == "limit":
        return value.limit
    if which == "use_default" and value.use_default:
        return None
    raise InvalidBillingRequest(f"{name}: set either use_default=true or limit")


#: ListUsage pages: the default and the most rows one page carries.
USAGE_PAGE_DEFAULT, USAGE_PAGE_MAX = 1000, 5000


def _instant(name: str, text: str) -> datetime:
    """An RFC 3339 instant with its offset; a naive one would be read in the server's zone, so it is refused."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidBillingRequest(f"{name} must be an RFC 3339 instant") from exc
    if value.tzinfo is None:
        raise InvalidBillingRequest(f"{name} must carry an offset (e.g. Z)")
    return value


def _grant_item(request: billing_pb2.GrantRequest) -> GrantItem:
    return GrantItem(
        user_id=_user_id(request.user_id), credits=request.credits, idempotency_key=request.idempotency_key,
        idempotency_scope=request.idempotency_scope, transaction_type=request.transaction_type or "grant",
        notes=request.notes, created_by=request.created_by,
    )


def alert_settings_message(settings: AlertSettings) -> billing_pb2.AlertSettings:
    return billing_pb2.AlertSettings(
        user_id=settings.user_id,
        threshold=to_wire(settings.threshold) if settings.threshold is not None else None,
        default_threshold=to_wire(settings.default_threshold),
        effective_threshold=to_wire(settings.effective_threshold),
        webhook_url=settings.webhook_url or "",
        webhook_secret=settings.webhook_secret or "",
        balance=to_wire(settings.balance),
        armed=settings.armed,
        unlimited=settings.unlimited,
    )


def _alert_threshold(request: billing_pb2.SetAlertsRequest) -> str | Keep | None:
    """Absent → keep; use_default → None (the service default); credits → that threshold."""
    if not request.HasField("threshold"):
        return KEEP
    which = request.threshold.WhichOneof("value")
    if which == "credits":
        return request.threshold.credits
    if which == "use_default" and request.threshold.use_default:
        return None
    raise InvalidBillingRequest("threshold: set either use_default=true or credits")


def _alert_webhook(request: billing_pb2.SetAlertsRequest) -> str | Keep | None:
    """Absent → keep; remove → None; url → that URL."""
    if not request.HasField("webhook"):
        return KEEP
    which = request.webhook.WhichOneof("value")
    if which == "url":
        return request.webhook.url
    if which == "remove" and request.webhook.remove:
        return None
    raise InvalidBillingRequest("webhook: set either remove=true or url")


def _user_id(value: int) -> int:
    if value <= 0:
        raise InvalidBillingRequest("user_id must be positive")
    return value


def usage_row_message(r: UsageRow) -> billing_pb2.UsageRow:
    return billing_pb2.UsageRow(
        id=r.id, user_id=r.user_id, created_at=r.created_at.isoformat(), request_id=r.request_id,
        endpoint=r.endpoint, method=r.method, model=r.model, project_path=r.project_path,
        input_tokens=r.input_tokens, output_tokens=r.output_tokens, tokens_used=r.tokens_used,
        credits_cost=to_wire(r.credits_cost), provider_cost=to_wire(r.provider_cost), success=r.success,
        error_message=r.error_message, latency_ms=r.latency_ms,
    )


def group_message(g: Group) -> billing_pb2.UsageGroup:
    return billing_pb2.UsageGroup(name=g.name, user_id=g.user_id, requests=g.requests, failed=g.failed,
                                  tokens=g.tokens, credits=to_wire(g.credits))


def purchase_message(purchase: Purchase) -> billing_pb2.Purchase:
    return billing_pb2.Purchase(
        id=str(purchase.id), user_id=purchase.user_id, pack_id=purchase.pack_id, credits=to_wire(purchase.credits),
        amount=purchase.amount, currency=purchase.currency, state=purchase.state,
        payment_intent_id=purchase.payment_intent_id or "", client_secret=purchase.client_secret,
        payment_status=purchase.payment_status, credited=to_wire(purchase.credited),
        refunded_amount=purchase.refunded_amount, disputed_amount=purchase.disputed_amount,
        failure_message=purchase.failure_message or "", created_at=purchase.created_at,
        updated_at=purchase.updated_at, checkout_url=purchase.checkout_url,
    )


class BillingServicer(billing_pb2_grpc.BillingServicer):
    def __init__(self, repository: BillingRepository, purchases: Purchases, alerts: AlertRepository, *,
                 fault_injection: bool = False) -> None:
        self._repo = repository
        self._purchases = purchases
        self._fault_injection = fault_injection
        self._alerts = alerts
        self._reports = UsageReports(repository.pool)

    async def OpenAccount(
        self, request: billing_pb2.OpenAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Balance:
        return balance_message(await self._repo.open_account(_user_id(request.user_id), request.unlimited))

    async def GetBalance(self, request: billing_pb2.UserRef, context: grpc.aio.ServicerContext) -> billing_pb2.Balance:
        return balance_message(await self._repo.balance(_user_id(request.user_id)))

    async def Grant(
        self, request: billing_pb2.GrantRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GrantResponse:
        result = await self._repo.grant(
            _user_id(request.user_id),
            request.credits,
            transaction_type=request.transaction_type or "grant",
            notes=request.notes,
            created_by=request.created_by,
            idempotency_key=request.idempotency_key,
            idempotency_scope=request.idempotency_scope,
        )
        return billing_pb2.GrantResponse(
            transaction_id=result.transaction_id, balance=balance_message(result.balance), replayed=result.replayed
        )

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveResponse:
        injected = faults.parse(request.fault, enabled=self._fault_injection)
        work = self._reserve(request, injected)
        # A reserve that has joined a group-commit batch runs to completion even if its caller gives up (its
        # answer is then lost). With a fault injected, the whole reserve runs that way, so a stall before it
        # makes the late reserve that the caller's void must stop.
        return await (asyncio.shield(work) if injected.points else work)

    async def _reserve(self, request: billing_pb2.ReserveRequest, injected: faults.Faults
                       ) -> billing_pb2.ReserveResponse:
        await injected.hit(FaultPoint.STALL_BEFORE_RESERVE)
        result = await self._repo.reserve(
            request.hold_id,
            _user_id(request.user_id),
            request.amount,
            ttl_seconds=request.ttl_seconds,
            endpoint=request.endpoint,
            request_id=request.request_id,
            idempotency_key=request.idempotency_key,
            fingerprint=request.fingerprint,
        )
        await injected.hit(FaultPoint.STALL_AFTER_RESERVE)
        return reserve_message(result)

    async def LookupKey(
        self, request: billing_pb2.LookupKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveResponse:
        result = await self._repo.lookup_key(_user_id(request.user_id), request.idempotency_key, request.fingerprint)
        return reserve_message(result)

    async def Commit(
        self, request: billing_pb2.CommitRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SettleResponse:
        result = await self._repo.commit(request.hold_id, _user_id(request.user_id), request.amount or "0",
                                         usage_record(request.usage), request.result_json)
        await faults.parse(request.fault, enabled=self._fault_injection).hit(FaultPoint.STALL_AFTER_COMMIT)
        return settle_message(result)

    async def Release(
        self, request: billing_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SettleResponse:
        return settle_message(await self._repo.release(request.hold_id, _user_id(request.user_id),
                                                       usage_record(request.usage)))

    async def ReserveBatch(
        self, request: billing_pb2.ReserveBatchRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveBatchResponse:
        calls = each_with_id(request.items, lambda item: self.Reserve(item, context), lambda item: item.request_id,
                             "Reserve")
        return billing_pb2.ReserveBatchResponse(
            items=await answer_each(calls, billing_pb2.ReserveOutcome, billing_pb2.ItemStatus))

    async def CommitBatch(
        self, request: billing_pb2.CommitBatchRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SettleBatchResponse:
        calls = each_with_id(request.items, lambda item: self.Commit(item, context),
                             lambda item: item.usage.request_id, "Commit")
        return billing_pb2.SettleBatchResponse(
            items=await answer_each(calls, billing_pb2.SettleOutcome, billing_pb2.ItemStatus))

    async def UsageStats(
        self, request: billing_pb2.UserRef, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UsageStatsResponse:
        stats = await self._repo.usage_stats(_user_id(request.user_id))
        return billing_pb2.UsageStatsResponse(
            balance=balance_message(stats.balance),
            total_requests=stats.total_requests,
            total_tokens=stats.total_tokens,
            total_cost=to_wire(stats.total_cost),
            successful_requests=stats.successful_requests,
            avg_tokens_per_request=stats.avg_tokens_per_request,
            recent_usage=[
                billing_pb2.EndpointUsage(endpoint=u.endpoint, count=u.count, total_cost=to_wire(u.total_cost))
                for u in stats.recent_usage
            ],
        )

    async def ListTransactions(
        self, request: billing_pb2.ListTransactionsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListTransactionsResponse:
        if request.page_size < 0 or request.before_id < 0:
            raise InvalidBillingRequest("page_size and before_id must not be negative")
        page_size = min(request.page_size or 50, 500)
        rows = await self._repo.transactions(_user_id(request.user_id), page_size, request.before_id)
        items = [
            billing_pb2.Transaction(
                id=r["id"],
                transaction_type=r["transaction_type"],
                credits_amount=to_wire(r["credits_amount"]),
                balance_after=to_wire(r["balance_after"]),
                notes=r["notes"] or "",
                created_by=r["created_by"] or "",
                hold_id=str(r["hold_id"]) if r["hold_id"] else "",
                created_at=r["created_at"].isoformat(),
                purchase_id=str(r["purchase_id"]) if r["purchase_id"] else "",
                stripe_event_id=r["stripe_event_id"] or "",
            )
            for r in rows
        ]
        next_before = rows[-1]["id"] if len(rows) == page_size else 0
        return billing_pb2.ListTransactionsResponse(transactions=items, next_before_id=next_before)

    async def UsageTotals(
        self, request: billing_pb2.UsageTotalsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UsageTotalsResponse:
        if len(request.user_ids) > 500:
            raise InvalidBillingRequest("at most 500 user ids")
        totals = await self._repo.usage_totals(list(request.user_ids))
        return billing_pb2.UsageTotalsResponse(
            totals=[
                billing_pb2.UserTotals(
                    balance=balance_message(b), total_requests=n, total_tokens=t, total_cost=to_wire(c)
                )
                for b, n, t, c in totals
            ]
        )

    async def GetLimits(self, request: billing_pb2.UserRef, context: grpc.aio.ServicerContext) -> billing_pb2.Limits:
        return limits_message(await self._repo.limits(_user_id(request.user_id)))

    async def SetLimits(
        self, request: billing_pb2.SetLimitsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Limits:
        limits = await self._repo.set_limits(
            _user_id(request.user_id),
            requests_per_minute=_limit_setting(request, "requests_per_minute"),
            max_concurrent=_limit_setting(request, "max_concurrent"),
        )
        return limits_message(limits)

    # -- purchases ---------------------------------------------------------------------------------------
    async def ListPacks(
        self, request: billing_pb2.ListPacksRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListPacksResponse:
        packs = [
            billing_pb2.Pack(id=p.id, name=p.name, credits=to_wire(p.credits), bonus_credits=to_wire(p.bonus_credits),
                             amount=p.amount, currency=p.currency)
            for p in self._purchases.catalogue.packs
        ]
        return billing_pb2.ListPacksResponse(packs=packs, publishable_key=self._purchases.publishable_key,
                                             test_mode=self._purchases.test_cards)

    async def CreatePurchase(
        self, request: billing_pb2.CreatePurchaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Purchase:
        checkout = (CheckoutPages(request.checkout.success_url, request.checkout.cancel_url)
                    if request.HasField("checkout") else None)
        purchase = await self._purchases.create(
            _user_id(request.user_id), request.pack_id, idempotency_key=request.idempotency_key,
            payment_method=request.payment_method, test_card=request.test_card, checkout=checkout)
        return purchase_message(purchase)

    async def ListPurchases(
        self, request: billing_pb2.ListPurchasesRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListPurchasesResponse:
        if request.page_size < 0 or request.before_seq < 0:
            raise InvalidBillingRequest("page_size and before_seq must not be negative")
        page_size = min(request.page_size or 50, 100)
        purchases = await self._purchases.page(_user_id(request.user_id), page_size, request.before_seq)
        return billing_pb2.ListPurchasesResponse(
            purchases=[purchase_message(p) for p in purchases],
            next_before_seq=purchases[-1].seq if len(purchases) == page_size else 0)

    async def HandleStripeEvent(
        self, request: billing_pb2.StripeEventRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.StripeEventResponse:
        result = await self._purchases.handle_event(request.payload, request.signature)
        return billing_pb2.StripeEventResponse(
            event_id=result.event_id, type=result.type, outcome=result.outcome,
            purchase_id=str(result.purchase_id) if result.purchase_id else "", state=result.state,
            moved=to_wire(result.moved))

    # -- bulk --------------------------------------------------------------------------------------------
    async def GrantBatch(
        self, request: billing_pb2.GrantBatchRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GrantBatchResponse:
        items: list[GrantItem | None] = []
        refused: dict[int, BaseException] = {}
        for n, item in enumerate(request.items):
            try:
                items.append(_grant_item(item))
            except InvalidBillingRequest as exc:
                items.append(None)
                refused[n] = exc
        results = iter(await self._repo.grant_many([i for i in items if i is not None], dry_run=request.dry_run))
        outcomes = []
        for n, item in enumerate(items):
            result = refused[n] if item is None else next(results)
            if isinstance(result, BaseException):
                outcomes.append(billing_pb2.GrantOutcome(status=item_status(result, billing_pb2.ItemStatus)))
            else:
                outcomes.append(billing_pb2.GrantOutcome(
                    response=billing_pb2.GrantResponse(transaction_id=result.transaction_id,
                                                       balance=balance_message(result.balance),
                                                       replayed=result.replayed),
                    status=billing_pb2.ItemStatus(code=0)))
        return billing_pb2.GrantBatchResponse(items=outcomes)

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListUsageResponse:
        start, end = _instant("start", request.start), _instant("end", request.end)
        if request.after_id < 0 or not 0 <= request.page_size <= USAGE_PAGE_MAX:
            raise InvalidBillingRequest(f"after_id must not be negative and page_size at most {USAGE_PAGE_MAX}")
        page_size = request.page_size or USAGE_PAGE_DEFAULT
        rows = await self._repo.usage_page(start, end, request.after_id, page_size)
        return billing_pb2.ListUsageResponse(
            rows=[usage_row_message(r) for r in rows],
            next_after_id=rows[-1].id if len(rows) == page_size else 0,
        )

    async def UsageReport(
        self, request: billing_pb2.UsageReportRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UsageReportResponse:
        report = await self._reports.report(request.user_id, request.days, request.top_users)
        return billing_pb2.UsageReportResponse(
            days=[group_message(g) for g in report.days],
            by_endpoint=[group_message(g) for g in report.by_endpoint],
            by_model=[group_message(g) for g in report.by_model],
            top_users=[group_message(g) for g in report.top_users],
        )

    async def RecentCalls(
        self, request: billing_pb2.RecentCallsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.RecentCallsResponse:
        rows, next_before = await self._reports.recent(request.user_id, request.failed_only, request.page_size,
                                                       request.before_id)
        return billing_pb2.RecentCallsResponse(rows=[usage_row_message(r) for r in rows], next_before_id=next_before)

    async def GetAlerts(
        self, request: billing_pb2.UserRef, context: grpc.aio.ServicerContext
    ) -> billing_pb2.AlertSettings:
        return alert_settings_message(await self._alerts.settings(_user_id(request.user_id)))

    async def SetAlerts(
        self, request: billing_pb2.SetAlertsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.AlertSettings:
        settings = await self._alerts.update(
            _user_id(request.user_id), threshold=_alert_threshold(request), webhook_url=_alert_webhook(request),
            rotate_secret=request.rotate_secret,
        )
        return alert_settings_message(settings)
