"""What an import did to each row: the one place a created user's API key appears (it is shown once, and
never logged: `RowReport` leaves it out of its repr).

Outcomes: `created`; `exists` (a user with this username and this email is already there: nothing is created,
and its initial credits are granted at most once ever); `rejected` (the username or the email belongs to
another user); `not_processed` (a service failed part-way; the same file run again finishes the job).
A dry run reports the same outcomes for what it would do, and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import grpc

from common.money import ZERO, for_json


class Outcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    REJECTED = "rejected"
    NOT_PROCESSED = "not_processed"


@dataclass(slots=True)
class RowReport:
    row: int
    username: str
    outcome: Outcome
    reason: str
    credits_granted: Decimal = ZERO
    api_key: str = field(default="", repr=False)


@dataclass(slots=True)
class ImportReport:
    dry_run: bool
    rows: list[RowReport] = field(default_factory=list)
    #: The call that failed part-way (and which service it went to): the rows after it are `not_processed`.
    error: grpc.aio.AioRpcError | None = field(default=None, repr=False)
    failed_service: str = ""

    @property
    def complete(self) -> bool:
        return self.error is None

    def summary(self) -> dict[str, Any]:
        counts = Counter(r.outcome for r in self.rows)
        return {"rows": len(self.rows), **{o.value: counts[o] for o in Outcome},
                "credits_granted": for_json(sum((r.credits_granted for r in self.rows), ZERO))}

    def failure(self) -> str:
        """What failed, for people: empty when the import is complete."""
        if self.error is None:
            return ""
        code = self.error.code()
        return (f"the {self.failed_service} service failed ({code.name if code else 'no status'}): "
                "the rows marked not_processed were not imported; run the same file again to finish")

    def as_dict(self) -> dict[str, Any]:
        """The report as the REST answer and `--json` give it (credits as exact decimals)."""
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            **({"failure": self.failure()} if self.error is not None else {}),
            "summary": self.summary(),
            "rows": [{"row": r.row, "username": r.username, "outcome": r.outcome.value, "reason": r.reason,
                      "credits_granted": for_json(r.credits_granted),
                      **({"api_key": r.api_key} if r.api_key else {})} for r in self.rows],
        }

    def text_lines(self) -> Iterator[str]:
        """The report for a terminal: a header, one tab-separated line per row, then the totals."""
        yield "\t".join(("row", "username", "outcome", "credits", "reason"))
        for r in self.rows:
            reason = f"{r.reason}; API key (shown once): {r.api_key}" if r.api_key else r.reason
            yield "\t".join((str(r.row), r.username, r.outcome.value, str(for_json(r.credits_granted)), reason))
        s = self.summary()
        verb = "would be granted" if self.dry_run else "granted"
        yield (f"{'DRY RUN, nothing changed: ' if self.dry_run else ''}{s['rows']} rows: {s['created']} created, "
               f"{s['exists']} exist, {s['rejected']} rejected, {s['not_processed']} not processed; "
               f"{s['credits_granted']} credits {verb}")
