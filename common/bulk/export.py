"""Exports as CSV, page by page so neither side holds the whole table: users with their balances and usage
totals (auth's users joined with billing's numbers by id), and the usage log between two days with each row's
username.

Money is written exactly, as decimals with 4 places ("12.5000"), never through a float. A text cell a
spreadsheet would run as a formula (one starting with = + - @, a tab or a carriage return) gets a leading `'`
(OWASP's advice against CSV injection): project paths and error messages are partly what users typed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

import grpc

from common.money import from_wire, to_wire
from protos import auth_pb2, auth_pb2_grpc, billing_pb2, billing_pb2_grpc

USER_COLUMNS = ("username", "email", "is_admin", "disabled", "created_at", "available", "held", "total_purchased",
                "total_requests", "total_tokens", "total_cost")
USAGE_COLUMNS = ("id", "created_at", "user_id", "username", "request_id", "endpoint", "method", "model",
                 "project_path", "input_tokens", "output_tokens", "tokens_used", "credits_cost", "provider_cost",
                 "success", "error_message", "latency_ms")
#: Users per page: the most billing's UsageTotals takes at once.
USERS_PAGE = 500
USAGE_PAGE = 2000
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
R = TypeVar("R")


class ExportFailed(Exception):
    """A service call failed during an export: which service, and its error (the edge answers it as it answers
    any failed call, edge/errors.py from_grpc)."""

    def __init__(self, service: str, error: grpc.aio.AioRpcError) -> None:
        self.service, self.error = service, error
        super().__init__(f"the {service} service failed ({error.code().name}): {error.details()}")


async def _call(service: str, call: Awaitable[R]) -> R:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise ExportFailed(service, exc) from exc


class InvalidRange(ValueError):
    """Dates that are not YYYY-MM-DD, or a range that ends before it starts; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def day_range(start: str, end: str) -> tuple[datetime, datetime]:
    """`start` to `end`, both YYYY-MM-DD and both included, as UTC instants [start 00:00, the day after end)."""
    days = []
    for name, text in (("from", start), ("to", end)):
        try:
            if not _DAY.fullmatch(text):
                raise ValueError(text)
            days.append(date.fromisoformat(text))
        except ValueError:
            raise InvalidRange(name, "must be a date written YYYY-MM-DD") from None
    if days[1] < days[0]:
        raise InvalidRange("to", "must not be before from")
    if days[1] == date.max:
        raise InvalidRange("to", "must be before 9999-12-31")
    return (datetime.combine(days[0], time(), UTC), datetime.combine(days[1] + timedelta(days=1), time(), UTC))


def cell(text: str) -> str:
    """A text cell no spreadsheet will run as a formula."""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _csv(rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _flag(value: bool) -> str:
    return "true" if value else "false"


async def users_csv(auth: auth_pb2_grpc.AuthStub, billing: billing_pb2_grpc.BillingStub, *, timeout: float
                    ) -> AsyncIterator[str]:
    """The header, then every user (in id order) a page at a time. `available` is empty for an unlimited
    (admin) account, as `users.credits_remaining` is NULL for it; a user with no account yet has zeros."""
    yield _csv([USER_COLUMNS])
    after = 0
    while True:
        page = await _call("auth", auth.ListUsers(
            auth_pb2.ListUsersRequest(page_size=USERS_PAGE, after_id=after), timeout=timeout))
        if page.users:
            totals = await _call("billing", billing.UsageTotals(
                billing_pb2.UsageTotalsRequest(user_ids=[u.id for u in page.users]), timeout=timeout))
            by_id = {t.balance.user_id: t for t in totals.totals}
            rows = []
            for u in page.users:
                t = by_id.get(u.id, billing_pb2.UserTotals())
                b = t.balance
                rows.append((
                    cell(u.username), cell(u.email), _flag(u.is_admin), _flag(u.disabled), u.created_at,
                    "" if b.unlimited else to_wire(from_wire(b.available)), to_wire(from_wire(b.held)),
                    to_wire(from_wire(b.total_credits_purchased)), t.total_requests, t.total_tokens,
                    to_wire(from_wire(t.total_cost)),
                ))
            yield _csv(rows)
        if not page.next_after_id:
            return
        after = page.next_after_id


async def usage_csv(auth: auth_pb2_grpc.AuthStub, billing: billing_pb2_grpc.BillingStub, start: datetime,
                    end: datetime, *, timeout: float) -> AsyncIterator[str]:
    """The header, then the usage log from `start` (inclusive) to `end` (exclusive) in id order, a page at a
    time, each row with its user's name (empty for an id auth does not know)."""
    yield _csv([USAGE_COLUMNS])
    after = 0
    while True:
        page = await _call("billing", billing.ListUsage(billing_pb2.ListUsageRequest(
            start=start.isoformat(), end=end.isoformat(), after_id=after, page_size=USAGE_PAGE), timeout=timeout))
        if page.rows:
            ids = sorted({r.user_id for r in page.rows})
            found = await _call("auth", auth.FindUsers(auth_pb2.FindUsersRequest(ids=ids), timeout=timeout))
            names = {u.id: u.username for u in found.users}
            yield _csv((
                r.id, r.created_at, r.user_id, cell(names.get(r.user_id, "")), cell(r.request_id),
                cell(r.endpoint), cell(r.method), cell(r.model), cell(r.project_path), r.input_tokens,
                r.output_tokens, r.tokens_used, to_wire(from_wire(r.credits_cost)),
                to_wire(from_wire(r.provider_cost)), _flag(r.success), cell(r.error_message),
                r.latency_ms if r.HasField("latency_ms") else "",
            ) for r in page.rows)
        if not page.next_after_id:
            return
        after = page.next_after_id
