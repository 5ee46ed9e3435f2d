"""Billing data access: the ledger and two-phase holds (pending → posted | voided | expired).

Every method that moves credits does it in one transaction that also writes the ledger rows (and the
usage row, for settlements), so the cached balances in `credit_accounts` always equal what the ledger
re-derives (`reconcile`). asyncpg errors become billing domain errors here.
"""

from __future__ import annotations

import asyncio
import enum
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from common.coalesce import Coalescer
from common.errors import DB_DOWN, DomainError
from common.idempotency_key import InvalidIdempotencyKey, check_idempotency_key
from common.money import ZERO, InvalidAmount, parse_credits
from common.rate_limits import MAX_CONCURRENT as MAX_CONCURRENT_LIMIT
from common.rate_limits import MAX_REQUESTS_PER_MINUTE
from services.billing import queries
from services.billing.errors import (
    SQLSTATE_ERRORS,
    IdempotencyConflict,
    InvalidBillingRequest,
    InvalidCredits,
)
from services.billing.outcomes import RESOLUTIONS, Outcome, Reason

GRANT_TYPES = frozenset({"grant", "purchase", "refund", "adjustment"})
#: Grants and purchases count toward `total_credits_purchased` (the guide: 100 initial + 50 granted = 150).
PURCHASE_TYPES = frozenset({"grant", "purchase"})
#: Who may own an idempotency key: "grant:12", "create-user:7", "cli".
_SCOPE = re.compile(r"[a-z][a-z-]{0,31}(:[0-9]{1,19})?")


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: int
    available: Decimal = ZERO
    held: Decimal = ZERO
    total_credits_purchased: Decimal = ZERO
    unlimited: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record, user_id: int | None = None) -> Balance:
        return cls(
            user_id=user_id if user_id is not None else row["user_id"],
            available=row["available"],
            held=row["held"],
            total_credits_purchased=row["total_credits_purchased"],
            unlimited=row["unlimited"],
        )


@dataclass(frozen=True, slots=True)
class GrantResult:
    transaction_id: int
    balance: Balance
    replayed: bool


@dataclass(frozen=True, slots=True)
class GrantItem:
    """One grant of a batch, as the single `grant` takes it."""

    user_id: int
    credits: str | Decimal
    idempotency_key: str
    idempotency_scope: str = ""
    transaction_type: str = "grant"
    notes: str = ""
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class _GrantTerms:
    """A grant checked: what the ledger will hold (the key scoped, the amount signed)."""

    user_id: int
    amount: Decimal
    transaction_type: str
    key: str
    notes: str
    created_by: str

    def same_as(self, first: asyncpg.Record) -> bool:
        """Whether the ledger's first grant with this key was this very grant (a retry), not another."""
        return (first["user_id"], first["credits_amount"], first["transaction_type"], first["notes"] or "") == (
            self.user_id, self.amount, self.transaction_type, self.notes)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of the usage log, as the export lists it."""

    id: int
    user_id: int
    created_at: datetime
    request_id: str
    endpoint: str
    method: str
    model: str
    project_path: str
    input_tokens: int
    output_tokens: int
    tokens_used: int
    credits_cost: Decimal
    provider_cost: Decimal
    success: bool
    error_message: str
    latency_ms: int | None

    @classmethod
    def from_row(cls, r: asyncpg.Record) -> UsageRow:
        """A usage_logs row selected as queries.USAGE_PAGE selects it."""
        return cls(
            id=r["id"], user_id=r["user_id"], created_at=r["created_at"], request_id=r["request_id"],
            endpoint=r["endpoint"], method=r["method"], model=r["model_used"] or "",
            project_path=r["project_path"] or "",
            input_tokens=r["input_tokens"], output_tokens=r["output_tokens"], tokens_used=r["tokens_used"],
            credits_cost=r["credits_cost"], provider_cost=r["provider_cost"], success=r["response_success"],
            error_message=r["error_message"] or "", latency_ms=r["latency_ms"],
        )


@dataclass(frozen=True, slots=True)
class LimitDefaults:
    """The limits for accounts that have none of their own; 0 = no limit."""

    requests_per_minute: int = 60
    max_concurrent: int = 5


@dataclass(frozen=True, slots=True)
class Replay:
    """A posted call as its first answer told it, for a retry with the same idempotency key."""

    hold_id: str
    request_id: str
    result_json: str
    input_tokens: int
    output_tokens: int
    model: str
    charged: Decimal
    balance: Balance  # right after the charge


@dataclass(frozen=True, slots=True)
class ReserveResult:
    ok: bool
    available: Decimal
    required: Decimal
    unlimited: bool
    reason: Reason = Reason.OK
    retry_after_seconds: int = 0
    replay: Replay | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """A user's stored limits (None = the service default) and what is in force now."""

    user_id: int
    requests_per_minute: int | None
    max_concurrent: int | None
    effective_requests_per_minute: int
    effective_max_concurrent: int
    holds_open: int
    exempt: bool  # unlimited accounts are never rate limited


class Keep(enum.Enum):
    """SetLimits' "leave this one as it is" (distinct from None, which means "use the default")."""

    KEEP = "keep"


KEEP = Keep.KEEP
LimitSetting = int | None | Keep


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What the caller knows about the call a hold paid for."""

    endpoint: str = ""
    method: str = "POST"
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    project_path: str = ""
    request_id: str = ""
    latency_ms: int | None = None
    error_message: str = ""
    provider_cost: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class SettleResult:
    outcome: Outcome
    charged: Decimal
    balance: Balance


@dataclass(frozen=True, slots=True)
class EndpointUsage:
    endpoint: str
    count: int
    total_cost: Decimal


@dataclass(frozen=True, slots=True)
class UsageStats:
    balance: Balance
    total_requests: int
    total_tokens: int
    total_cost: Decimal
    successful_requests: int
    avg_tokens_per_request: int
    recent_usage: list[EndpointUsage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Difference:
    """One account whose cached numbers disagree with what the ledger re-derives."""

    user_id: int
    available: Decimal
    ledger_available: Decimal
    held: Decimal
    pending_held: Decimal
    holds_open: int
    pending_holds: int
    listed_pending_holds: int
    total_credits_purchased: Decimal
    ledger_purchased: Decimal
    ledger_usage: Decimal
    logged_usage: Decimal
    rows_consistent: bool
    owed: Decimal  # what a limited account owes: exactly the part of its balance below zero


@dataclass(frozen=True, slots=True)
class HoldDifference:
    """One hold whose ledger rows, usage row or pending marker disagree with its amount and resolution."""

    hold_id: uuid.UUID
    user_id: int
    amount: Decimal
    outcome: str | None
    charge: Decimal | None
    problem: str


@dataclass(frozen=True, slots=True)
class Conservation:
    """The books as a whole: credited - charged = in accounts; held = pending; posted = charged = logged."""

    credited: Decimal
    charged: Decimal
    in_accounts: Decimal
    held: Decimal
    pending: Decimal
    posted: Decimal
    logged: Decimal

    @property
    def holds(self) -> bool:
        return (self.credited - self.charged == self.in_accounts and self.held == self.pending
                and self.posted == self.charged == self.logged)


@dataclass(frozen=True, slots=True)
class PurchaseDifference:
    """A purchase whose credits differ from its ledger rows or from what its payment facts say (a difference
    in the books), or a payment an operator must settle with the buyer (`attention`: not a difference)."""

    purchase_id: uuid.UUID
    user_id: int
    problem: str


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    accounts: list[Difference]
    holds: list[HoldDifference]
    conservation: Conservation
    purchases: list[PurchaseDifference] = field(default_factory=list)
    #: Payments taken but not credited (another amount than the pack's, a second PaymentIntent): reported for
    #: an operator, but the books are consistent.
    attention: list[PurchaseDifference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.accounts and not self.holds and not self.purchases and self.conservation.holds

    def of(self, *user_ids: int) -> list[Difference | HoldDifference | PurchaseDifference]:
        """The differences that concern these users (accounts, holds and purchases)."""
        wanted = set(user_ids)
        every: list[Difference | HoldDifference | PurchaseDifference] = [*self.accounts, *self.holds,
                                                                         *self.purchases]
        return [d for d in every if d.user_id in wanted]


def _amount(value: str | Decimal, *, allow_zero: bool = False) -> Decimal:
    try:
        return parse_credits(value, allow_zero=allow_zero)
    except InvalidAmount as exc:
        raise InvalidCredits(f"Invalid credit amount: {exc}") from exc


def _check_limit(name: str, value: LimitSetting, maximum: int) -> None:
    if value is KEEP or value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidBillingRequest(f"{name} must be a whole number from 0 (no limit) to {maximum}")


#: The most reserves (or settlements) one statement carries.
MAX_BATCH = 64
#: The most grants one GrantBatch carries (the bulk import sends 1,000 at a time).
MAX_GRANT_BATCH = 5_000
#: The sweeper expires this many holds per statement, until none is left.
SWEEP_BATCH = 200


def _domain_error(exc: asyncpg.PostgresError) -> Exception:
    """A billing function's refusal (custom SQLSTATE) as its domain error; anything else unchanged."""
    error = SQLSTATE_ERRORS.get(exc.sqlstate or "")
    return error() if error is not None else exc


def _columns(items: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows → one array per column (the *_many functions take arrays)."""
    return [list(column) for column in zip(*items, strict=True)]


async def _one_by_one(pool: asyncpg.Pool, query: str, items: list[tuple[Any, ...]]
                      ) -> list[asyncpg.Record | BaseException | None]:
    """Each item through the single statement: the batch was rolled back whole, so nothing ran twice."""
    results = await asyncio.gather(*(pool.fetchrow(query, *item) for item in items), return_exceptions=True)
    return list(results)


def _hold_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidBillingRequest("hold_id must be a UUID") from exc


class CreditLimits(Protocol):
    """Where a refusal for insufficient credits is recorded (services/billing/alerts: the guide's "users
    hitting credit limits" event)."""

    async def credit_limit_reached(self, user_id: int, required: Decimal, endpoint: str) -> int | None: ...


class BillingRepository:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        default_ttl_seconds: int = 600,
        recent_days: int = 30,
        limit_defaults: LimitDefaults | None = None,
        key_retention_hours: int = 24,
        credit_limits: CreditLimits | None = None,
    ) -> None:
        self._pool = pool
        self._credit_limits = credit_limits
        self._default_ttl = default_ttl_seconds
        self._recent_days = recent_days
        self._limits = limit_defaults or LimitDefaults()
        self._key_retention_hours = key_retention_hours
        # Group commit: the reserves (and settlements) that reach billing together run as one statement.
        self._reserves: Coalescer[tuple[Any, ...], asyncpg.Record | None] = Coalescer(
            self._reserve_batch, max_batch=MAX_BATCH)
        self._settles: Coalescer[tuple[Any, ...], asyncpg.Record] = Coalescer(self._settle_batch, max_batch=MAX_BATCH)

    # -- accounts ----------------------------------------------------------------------------------
    async def open_account(self, user_id: int, unlimited: bool = False) -> Balance:
        row = await self._pool.fetchrow(queries.OPEN_ACCOUNT, user_id, unlimited)
        return Balance.from_row(row)

    async def balance(self, user_id: int) -> Balance:
        row = await self._pool.fetchrow(queries.BALANCE, user_id)
        return Balance.from_row(row) if row is not None else Balance(user_id=user_id)

    # -- grants ------------------------------------------------------------------------------------
    async def grant(
        self,
        user_id: int,
        credits: str | Decimal,
        *,
        transaction_type: str = "grant",
        notes: str = "",
        created_by: str = "",
        idempotency_key: str,
        idempotency_scope: str = "",
    ) -> GrantResult:
        """Add (or, for an adjustment, remove) credits with one ledger row; a repeated key (in its scope)
        replays."""
        terms = _grant_terms(GrantItem(user_id, credits, idempotency_key, idempotency_scope, transaction_type, notes,
                                       created_by))
        try:
            [result] = await self._grant_batch([terms])
        except asyncpg.CheckViolationError as exc:
            raise InvalidCredits("adjustment would make the balance negative") from exc
        except asyncpg.UniqueViolationError:
            # The same key raced in for another account and won: now this one finds it (a replay or a conflict).
            [result] = await self._grant_batch([terms])
        if isinstance(result, BaseException):
            raise result
        return result

    async def grant_many(self, items: Sequence[GrantItem], *, dry_run: bool = False) -> list[
        GrantResult | BaseException
    ]:
        """Many grants in one statement and one transaction (the bulk import grants 10,000 users' initial
        credits in a few statements, not 10,000 transactions). Each item is answered, in order, as `grant` would
        answer it alone (its result, or the error it would raise), except that its balance is the account's
        after the whole batch.

        With `dry_run` nothing is written: each item answers what it would do, a replay of the key's first
        grant (its transaction id), a key reused for another grant (IdempotencyConflict), or a new grant
        (transaction id 0) with the current balance.
        """
        if len(items) > MAX_GRANT_BATCH:
            raise InvalidBillingRequest(f"at most {MAX_GRANT_BATCH} grants per batch")
        answers: list[GrantResult | BaseException | None] = [None] * len(items)
        checked: list[tuple[int, _GrantTerms]] = []
        for i, item in enumerate(items):
            try:
                checked.append((i, _grant_terms(item)))
            except DomainError as exc:
                answers[i] = exc
        if checked:
            terms = [t for _, t in checked]
            if dry_run:
                results = await self._preview_grants(terms)
            else:
                try:
                    results = await self._grant_batch(terms)
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, DB_DOWN):
                        raise
                    # Rolled back whole (an adjustment below zero, a key raced in): each alone, so it fails alone.
                    results = list(await asyncio.gather(*(self.grant(
                        items[i].user_id, items[i].credits, transaction_type=items[i].transaction_type,
                        notes=items[i].notes, created_by=items[i].created_by,
                        idempotency_key=items[i].idempotency_key, idempotency_scope=items[i].idempotency_scope,
                    ) for i, _ in checked), return_exceptions=True))
            for (i, _), result in zip(checked, results, strict=True):
                answers[i] = result
        return [answer for answer in answers if answer is not None]

    async def _grant_batch(self, terms: list[_GrantTerms]) -> list[GrantResult | BaseException]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                queries.GRANT_MANY, [t.user_id for t in terms], [t.amount for t in terms],
                [t.transaction_type for t in terms], [t.transaction_type in PURCHASE_TYPES for t in terms],
                [t.key for t in terms], [t.notes for t in terms], [t.created_by for t in terms],
            )
            balances = await self._balances(conn, terms)
        by_item = {row["item"]: row for row in rows}
        results: list[GrantResult | BaseException] = []
        for n, t in enumerate(terms, 1):
            row = by_item[n]
            if row["key_conflict"]:
                results.append(IdempotencyConflict())
            else:
                results.append(GrantResult(row["transaction_id"], balances[t.user_id], row["replayed"]))
        return results

    async def _preview_grants(self, terms: list[_GrantTerms]) -> list[GrantResult | BaseException]:
        """What `_grant_batch` would answer, read only (a key met earlier in the same batch counts as granted)."""
        async with self._pool.acquire() as conn:
            firsts = {row["idempotency_key"]: row for row in await conn.fetch(
                queries.TRANSACTIONS_BY_IDEMPOTENCY_KEYS, [t.key for t in terms])}
            balances = await self._balances(conn, terms)
        results: list[GrantResult | BaseException] = []
        for t in terms:
            first = firsts.get(t.key)
            if first is None:
                firsts[t.key] = {"id": 0, "user_id": t.user_id, "credits_amount": t.amount,
                                 "transaction_type": t.transaction_type, "notes": t.notes}
                results.append(GrantResult(0, balances[t.user_id], False))
            elif t.same_as(first):
                results.append(GrantResult(first["id"], balances[t.user_id], True))
            else:
                results.append(IdempotencyConflict())
        return results

    @staticmethod
    async def _balances(conn: asyncpg.Connection, terms: list[_GrantTerms]) -> dict[int, Balance]:
        ids = sorted({t.user_id for t in terms})
        found = {row["user_id"]: Balance.from_row(row) for row in await conn.fetch(queries.BALANCES, ids)}
        return {uid: found.get(uid) or Balance(user_id=uid) for uid in ids}

    # -- two-phase holds ---------------------------------------------------------------------------
    async def reserve(
        self,
        hold_id: str,
        user_id: int,
        amount: str | Decimal,
        *,
        ttl_seconds: int = 0,
        endpoint: str = "",
        request_id: str = "",
        idempotency_key: str = "",
        fingerprint: bytes = b"",
    ) -> ReserveResult:
        """Place a pending hold, atomically and only if it fits and the user's limits allow it; with an
        idempotency key, answer from the key's record instead when it has one (replay, in progress, mismatch).

        A repeated hold id answers ok again (a retry whose first answer was lost), as long as it names the
        same user and amount.
        """
        hid = _hold_id(hold_id)
        value = _amount(amount)
        key, digest = _key(idempotency_key, fingerprint)
        ttl = ttl_seconds if ttl_seconds > 0 else self._default_ttl
        item = (hid, user_id, value, float(ttl), endpoint, request_id, key, digest)
        try:
            row = await self._reserves.submit(item)
        except asyncpg.UniqueViolationError:
            # The same hold id raced in twice; the statement that lost sees the winner's hold now.
            row = await self._pool.fetchrow(queries.RESERVE, *item, *self._reserve_settings())
        except asyncpg.PostgresError as exc:
            raise _domain_error(exc) from exc
        if row is None:  # no account at all
            return ReserveResult(ok=False, available=ZERO, required=value, unlimited=False,
                                 reason=Reason.INSUFFICIENT_CREDITS)
        reason = Reason(row["reason"])
        if reason is Reason.INSUFFICIENT_CREDITS and self._credit_limits is not None:
            # Only on a refusal, after it was decided: the reserve that places a hold pays nothing for this.
            await self._credit_limits.credit_limit_reached(user_id, value, endpoint)
        replay = await self.replay(row["key_hold_id"]) if reason is Reason.KEY_REPLAY else None
        # The verdict was taken under the account's row lock, so the reason is exact (no re-read races).
        return ReserveResult(ok=reason is Reason.OK, available=row["available"], required=value,
                             unlimited=row["unlimited"], reason=reason, retry_after_seconds=row["retry_after"],
                             replay=replay)

    async def lookup_key(self, user_id: int, idempotency_key: str, fingerprint: bytes) -> ReserveResult:
        """What the key's record says, placing nothing: `OK` means the key is unknown (or free again)."""
        key, digest = _key(idempotency_key, fingerprint)
        row = await self._pool.fetchrow(queries.KEY_STATE, user_id, key, digest, self._key_retention_hours)
        reason = Reason(row["reason"])
        replay = await self.replay(row["hold_id"]) if reason is Reason.KEY_REPLAY else None
        balance = await self.balance(user_id)
        return ReserveResult(ok=False, available=balance.available, required=ZERO, unlimited=balance.unlimited,
                             reason=reason, retry_after_seconds=1 if reason is Reason.KEY_IN_PROGRESS else 0,
                             replay=replay)

    async def replay(self, hold_id: uuid.UUID) -> Replay:
        """The first answer of a posted hold with an idempotency key."""
        row = await self._pool.fetchrow(queries.REPLAY, hold_id)
        if row is None:  # posted, but its result was purged (or never sent): the key cannot answer it again
            raise IdempotencyConflict("this idempotency key's first result is no longer kept; use a new key")
        balance = Balance(user_id=row["user_id"], available=row["available"], held=row["held"],
                          total_credits_purchased=row["total_credits_purchased"], unlimited=row["unlimited"])
        return Replay(hold_id=str(row["hold_id"]), request_id=row["request_id"], result_json=row["result_json"],
                      input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                      model=row["model_used"] or "", charged=row["charged"], balance=balance)

    def _reserve_settings(self) -> tuple[int, int, int]:
        """The values every reserve shares: key retention, then the default limits."""
        return self._key_retention_hours, self._limits.requests_per_minute, self._limits.max_concurrent

    # -- limits ------------------------------------------------------------------------------------
    def _limits_from_row(self, row: asyncpg.Record | None, user_id: int) -> Limits:
        rpm = row["requests_per_minute"] if row is not None else None
        concurrent = row["max_concurrent"] if row is not None else None
        return Limits(
            user_id=user_id,
            requests_per_minute=rpm,
            max_concurrent=concurrent,
            effective_requests_per_minute=self._limits.requests_per_minute if rpm is None else rpm,
            effective_max_concurrent=self._limits.max_concurrent if concurrent is None else concurrent,
            holds_open=row["holds_open"] if row is not None else 0,
            exempt=bool(row["unlimited"]) if row is not None else False,
        )

    async def limits(self, user_id: int) -> Limits:
        return self._limits_from_row(await self._pool.fetchrow(queries.LIMITS, user_id), user_id)

    async def set_limits(self, user_id: int, *, requests_per_minute: LimitSetting = KEEP,
                         max_concurrent: LimitSetting = KEEP) -> Limits:
        """Store a user's limits: an int (0 = no limit), None (= the service default) or KEEP."""
        _check_limit("requests_per_minute", requests_per_minute, MAX_REQUESTS_PER_MINUTE)
        _check_limit("max_concurrent", max_concurrent, MAX_CONCURRENT_LIMIT)
        row = await self._pool.fetchrow(
            queries.SET_LIMITS, user_id,
            requests_per_minute is not KEEP, None if requests_per_minute is KEEP else requests_per_minute,
            max_concurrent is not KEEP, None if max_concurrent is KEEP else max_concurrent,
        )
        return self._limits_from_row(row, user_id)

    async def commit(self, hold_id: str, user_id: int, amount: str | Decimal, usage: UsageRecord,
                     result_json: str = "") -> SettleResult:
        """Post the actual cost (at most the hold), release the rest, write the usage row (and, for a hold
        with an idempotency key, the result for replays): one transaction."""
        return await self.settle(_hold_id(hold_id), user_id, Outcome.POSTED, _amount(amount, allow_zero=True), usage,
                                 result_json)

    async def release(self, hold_id: str, user_id: int, usage: UsageRecord) -> SettleResult:
        """Void the hold (nothing charged) and write a failed usage row; an id never placed is remembered
        as voided, so a Reserve arriving after this places nothing."""
        return await self.settle(_hold_id(hold_id), user_id, Outcome.VOIDED, ZERO, usage)

    async def settle(self, hid: uuid.UUID, user_id: int, outcome: Outcome, charge: Decimal, usage: UsageRecord,
                     result_json: str = "") -> SettleResult:
        if outcome not in RESOLUTIONS:
            raise InvalidBillingRequest(f"a settlement is one of {sorted(RESOLUTIONS)}")
        try:
            row = await self._settles.submit((
                hid, user_id, str(outcome), charge, result_json or None, usage.request_id, usage.endpoint,
                usage.method, usage.input_tokens, usage.output_tokens, usage.provider_cost, usage.model,
                usage.project_path, usage.error_message, usage.latency_ms,
            ))
        except asyncpg.PostgresError as exc:
            raise _domain_error(exc) from exc
        balance = Balance(
            user_id=row["account_user_id"], available=row["account_available"], held=row["account_held"],
            total_credits_purchased=row["account_purchased"], unlimited=row["account_unlimited"],
        )
        return SettleResult(outcome=Outcome(row["settled_outcome"]), charged=row["settled_charge"], balance=balance)

    # -- group commit ------------------------------------------------------------------------------
    async def _reserve_batch(self, items: list[tuple[Any, ...]]) -> Sequence[asyncpg.Record | BaseException | None]:
        """billing_reserve for each item, in one statement; after a statement error, one by one (see
        _one_by_one)."""
        shared = self._reserve_settings()
        if len(items) == 1:
            return [await self._pool.fetchrow(queries.RESERVE, *items[0], *shared)]
        try:
            rows = await self._pool.fetch(queries.RESERVE_MANY, *_columns(items), *shared)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, DB_DOWN):
                raise
            return await _one_by_one(self._pool, queries.RESERVE, [(*item, *shared) for item in items])
        by_item: dict[int, asyncpg.Record] = {row["item"]: row for row in rows}
        return [by_item.get(i) for i in range(1, len(items) + 1)]  # no row: no account

    async def _settle_batch(self, items: list[tuple[Any, ...]]) -> Sequence[asyncpg.Record | BaseException | None]:
        """billing_settle for each item, in one statement; after a statement error (an unknown hold, a charge
        over its hold), one by one, so that item alone fails."""
        if len(items) == 1:
            return [await self._pool.fetchrow(queries.SETTLE, *items[0])]
        try:
            rows = await self._pool.fetch(queries.SETTLE_MANY, *_columns(items))
        except asyncpg.PostgresError as exc:
            if isinstance(exc, DB_DOWN):
                raise
            return await _one_by_one(self._pool, queries.SETTLE, items)
        by_item = {row["item"]: row for row in rows}
        return [by_item[i] for i in range(1, len(items) + 1)]

    async def sweep_expired(self) -> int:
        """Expire every pending hold past its deadline, however old, a batch at a time until none is left;
        returns how many this call expired."""
        usage = UsageRecord(error_message="hold expired before the call was settled")
        expired = 0
        while True:
            due = await self._pool.fetch(queries.EXPIRED_HOLDS, SWEEP_BATCH)
            results = await asyncio.gather(
                *(self.settle(r["hold_id"], r["user_id"], Outcome.EXPIRED, ZERO, usage) for r in due))
            expired += sum(result.outcome is Outcome.EXPIRED for result in results)
            if len(due) < SWEEP_BATCH:
                return expired

    async def purge(self) -> tuple[int, int]:
        """Forget replay results past the key retention and void markers past a day: (results, markers)."""
        results = await self._pool.execute(queries.PURGE_RESULTS, self._key_retention_hours)
        markers = await self._pool.execute(queries.PURGE_VOIDED_IDS)
        return int(results.rsplit(" ", 1)[-1]), int(markers.rsplit(" ", 1)[-1])

    # -- reporting ---------------------------------------------------------------------------------
    @property
    def pool(self) -> asyncpg.Pool:
        """For the read-only reports (services/billing/reports.py), which share this pool."""
        return self._pool

    async def usage_stats(self, user_id: int) -> UsageStats:
        async with self._pool.acquire() as conn:
            totals = await conn.fetchrow(queries.USAGE_TOTALS, user_id)
            recent = await conn.fetch(queries.RECENT_USAGE, user_id, self._recent_days)
            balance_row = await conn.fetchrow(queries.BALANCE, user_id)
        balance = Balance.from_row(balance_row) if balance_row is not None else Balance(user_id=user_id)
        requests = totals["total_requests"]
        return UsageStats(
            balance=balance,
            total_requests=requests,
            total_tokens=totals["total_tokens"],
            total_cost=totals["total_cost"],
            successful_requests=totals["successful_requests"],
            # Whole tokens, rounded down, as the guide shows (45231 / 23 → 1966).
            avg_tokens_per_request=totals["total_tokens"] // requests if requests else 0,
            recent_usage=[EndpointUsage(r["endpoint"], r["count"], r["total_cost"]) for r in recent],
        )

    async def usage_page(self, start: datetime, end: datetime, after_id: int, page_size: int) -> list[UsageRow]:
        """The usage log from `start` (inclusive) to `end` (exclusive), rows after `after_id`, in id order."""
        rows = await self._pool.fetch(queries.USAGE_PAGE, start, end, after_id, page_size)
        return [UsageRow.from_row(r) for r in rows]

    async def usage_totals(self, user_ids: list[int]) -> list[tuple[Balance, int, int, Decimal]]:
        rows = await self._pool.fetch(queries.USAGE_TOTALS_MANY, user_ids)
        return [(Balance.from_row(r), r["total_requests"], r["total_tokens"], r["total_cost"]) for r in rows]

    async def transactions(self, user_id: int, page_size: int, before_id: int) -> list[asyncpg.Record]:
        page_size = min(max(page_size or 50, 1), 500)
        return list(await self._pool.fetch(queries.LIST_TRANSACTIONS, user_id, before_id, page_size))

    async def reconcile(self) -> ReconcileReport:
        """Every account whose cached numbers differ from the ledger, every hold whose rows differ from its
        amount and resolution, every purchase whose credits differ from its rows or its payment facts, and the
        conservation of credits over all accounts."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            accounts = [Difference(**dict(r)) for r in await conn.fetch(queries.RECONCILE)]
            holds = [HoldDifference(**dict(r)) for r in await conn.fetch(queries.RECONCILE_HOLDS)]
            conservation = Conservation(**dict(await conn.fetchrow(queries.CONSERVATION)))
            purchases = [PurchaseDifference(**dict(r)) for r in await conn.fetch(queries.RECONCILE_PURCHASES)]
            attention = [PurchaseDifference(**dict(r))
                         for r in await conn.fetch(queries.PURCHASES_NEEDING_ATTENTION)]
        return ReconcileReport(accounts, holds, conservation, purchases, attention)


def _grant_terms(item: GrantItem) -> _GrantTerms:
    """A grant's fields checked (type, key and scope, amount; only an adjustment may be negative), as the
    ledger will hold them."""
    if item.transaction_type not in GRANT_TYPES:
        raise InvalidBillingRequest(f"transaction_type must be one of {sorted(GRANT_TYPES)}")
    key = _scoped_key(item.idempotency_key, item.idempotency_scope)
    if item.transaction_type == "adjustment" and str(item.credits).startswith("-"):
        amount = -_amount(str(item.credits)[1:])
    else:
        amount = _amount(item.credits)
    return _GrantTerms(item.user_id, amount, item.transaction_type, key, item.notes or "", item.created_by or "")


def _scoped_key(idempotency_key: str, scope: str) -> str:
    """A grant's key as the ledger keeps it: the caller's key (checked by the one rule) within its scope."""
    try:
        check_idempotency_key(idempotency_key)
    except InvalidIdempotencyKey as exc:
        raise InvalidBillingRequest(str(exc)) from exc
    if scope and not _SCOPE.fullmatch(scope):
        raise InvalidBillingRequest("idempotency_scope is a name, optionally with :<id>")
    return f"{scope}:{idempotency_key}" if scope else idempotency_key


def _key(idempotency_key: str, fingerprint: bytes) -> tuple[str | None, bytes | None]:
    """An idempotency key and its request's fingerprint, checked; (None, None) without a key."""
    if not idempotency_key:
        return None, None
    try:
        check_idempotency_key(idempotency_key)
    except InvalidIdempotencyKey as exc:
        raise InvalidBillingRequest(str(exc)) from exc
    if len(fingerprint) != 32:
        raise InvalidBillingRequest("a request with an idempotency key needs its 32-byte fingerprint")
    return idempotency_key, fingerprint
