"""The dashboards' reads of the usage log: usage per day, by endpoint, by model and by user, and the recent
calls newest first. Read-only, one statement each; the window is bounded (at most MAX_DAYS days, a page at
most MAX_PAGE rows) so no dashboard request reads an unbounded share of the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg

from services.billing.errors import InvalidBillingRequest
from services.billing.repository import UsageRow

MAX_DAYS = 366
DEFAULT_DAYS = 30
MAX_TOP_USERS = 100
MAX_PAGE = 200
DEFAULT_PAGE = 50

_SUMS = """count(*) AS requests, count(*) FILTER (WHERE NOT response_success) AS failed,
       COALESCE(sum(tokens_used), 0) AS tokens, COALESCE(sum(credits_cost), 0) AS credits"""

#: {who} is "user_id = $1 AND" or "" (everyone, $1 unused but typed); $2 is the window's first instant.
_BY = """
SELECT {key} AS name, {sums}
FROM usage_logs WHERE ($1::bigint IS NOT NULL) AND {who} created_at >= $2
GROUP BY 1 ORDER BY credits DESC, requests DESC, 1 {limit}
"""

_ROW_COLUMNS = """id, user_id, created_at, request_id, endpoint, method, model_used, project_path, input_tokens,
       output_tokens, tokens_used, credits_cost, provider_cost, response_success, error_message, latency_ms"""


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    requests: int
    failed: int
    tokens: int
    credits: Decimal
    user_id: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    days: list[Group]
    by_endpoint: list[Group]
    by_model: list[Group]
    top_users: list[Group]


def _groups(rows: list[asyncpg.Record], *, user_key: bool = False) -> list[Group]:
    return [Group(name="" if user_key else str(r["name"] or "(none)"), requests=r["requests"], failed=r["failed"],
                  tokens=r["tokens"], credits=r["credits"], user_id=int(r["name"]) if user_key else 0)
            for r in rows]


def window_start(days: int, today: date) -> datetime:
    return datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)


class UsageReports:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def report(self, user_id: int, days: int, top_users: int) -> Report:
        """`user_id` 0 = everyone (then with the `top_users` biggest spenders)."""
        days = days or DEFAULT_DAYS
        if user_id < 0 or not 1 <= days <= MAX_DAYS or not 0 <= top_users <= MAX_TOP_USERS:
            raise InvalidBillingRequest(f"user_id must not be negative, days 1..{MAX_DAYS}, "
                                        f"top_users 0..{MAX_TOP_USERS}")
        today = datetime.now(UTC).date()
        start = window_start(days, today)
        who = "user_id = $1 AND" if user_id else ""

        def query(key: str, limit: str = "") -> str:
            return _BY.format(key=key, sums=_SUMS, who=who, limit=limit)

        async with self._pool.acquire() as conn:
            per_day = await conn.fetch(query("to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"), user_id, start)
            by_endpoint = await conn.fetch(query("endpoint"), user_id, start)
            by_model = await conn.fetch(query("model_used"), user_id, start)
            top = (await conn.fetch(query("user_id", f"LIMIT {int(top_users)}"), user_id, start)
                   if not user_id and top_users else [])
        seen = {g.name: g for g in _groups(per_day)}
        every_day = [(start.date() + timedelta(days=i)).isoformat() for i in range(days)]
        return Report(
            days=[seen.get(d) or Group(d, 0, 0, 0, Decimal(0)) for d in every_day],
            by_endpoint=_groups(by_endpoint), by_model=_groups(by_model), top_users=_groups(top, user_key=True),
        )

    async def recent(self, user_id: int, failed_only: bool, page_size: int, before_id: int
                     ) -> tuple[list[UsageRow], int]:
        """A page of calls newest first, and the id to pass as `before_id` for the next (0: none)."""
        page_size = page_size or DEFAULT_PAGE
        if user_id < 0 or before_id < 0 or not 1 <= page_size <= MAX_PAGE:
            raise InvalidBillingRequest(f"user_id and before_id must not be negative, page_size 1..{MAX_PAGE}")
        where = ["($3::bigint IS NOT NULL)", "($2::bigint = 0 OR id < $2)"]
        if user_id:
            where.append("user_id = $1")
        else:
            where.append("($1::bigint IS NOT NULL)")
        if failed_only:
            where.append("NOT response_success")
        sql = (f"SELECT {_ROW_COLUMNS} FROM usage_logs WHERE {' AND '.join(where)} "
               f"ORDER BY id DESC LIMIT {int(page_size)}")
        rows = await self._pool.fetch(sql, user_id, before_id, page_size)
        page = [UsageRow.from_row(r) for r in rows]
        return page, (page[-1].id if len(page) == page_size else 0)
