"""An alert event as the outbox keeps it, and the JSON document a webhook receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg
import simplejson

from common.money import for_json


class Kind(StrEnum):
    """The events (credit_alerts.kind)."""

    LOW_BALANCE = "low_balance"   # a movement took the balance below the user's threshold
    CREDIT_LIMIT = "credit_limit"  # a metered call was refused for insufficient credits

    @property
    def event_type(self) -> str:
        """The webhook's `type`."""
        return {Kind.LOW_BALANCE: "credit.low_balance", Kind.CREDIT_LIMIT: "credit.limit_reached"}[self]


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    user_id: int
    kind: Kind
    balance: Decimal  # the credits the user owned (available + held) when it fired
    available: Decimal
    threshold: Decimal | None  # low_balance
    required: Decimal | None  # credit_limit: what the refused call needed
    endpoint: str | None  # credit_limit
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Alert:
        return cls(id=row["alert_id"], user_id=row["user_id"], kind=Kind(row["kind"]), balance=row["balance"],
                   available=row["available"], threshold=row["threshold"], required=row["required"],
                   endpoint=row["endpoint"], created_at=row["created_at"])

    @property
    def event_id(self) -> str:
        """The id every delivery of this event carries (webhook `id`, mail Message-ID): a receiver that sees it
        twice (deliveries are at least once) keeps the first."""
        return f"alert_{self.id}"

    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = {"user_id": self.user_id, "balance": for_json(self.balance),
                                "available": for_json(self.available)}
        if self.kind is Kind.LOW_BALANCE and self.threshold is not None:
            data["threshold"] = for_json(self.threshold)
        if self.kind is Kind.CREDIT_LIMIT and self.required is not None:
            data["required"] = for_json(self.required)
            data["endpoint"] = self.endpoint
        return {"id": self.event_id, "type": self.kind.event_type, "created": self.created_at.isoformat(),
                "data": data}

    def body(self) -> bytes:
        """The webhook body: the document as compact JSON, credits as exact JSON numbers."""
        return simplejson.dumps(self.document(), use_decimal=True, separators=(",", ":")).encode()
