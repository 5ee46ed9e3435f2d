"""Idempotency-Key records for metered calls (table idempotent_requests, see migrations/0007).

The guarantee: a retry with the same key is charged at most once and answers with the first result.
Charging happens only when the edge commits the hold of an attempt whose Execute marked the row
*executed*; a second attempt can only start from a row that is absent (the first failed before that,
so it charged nothing) or pending past its lease (the first never executed and can no longer mark it).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from protos import generation_pb2

State = generation_pb2.IdempotentState
IN_PROGRESS_RETRY_AFTER_SECONDS = 1

#: GenerateRequest fields that differ between attempts of the same logical request, and so are not part
#: of its fingerprint.
_PER_ATTEMPT_FIELDS = ("request_id", "hold_id", "idempotency_lease_seconds", "simulator_fault")


def fingerprint(request: generation_pb2.GenerateRequest) -> bytes:
    """What makes two requests "the same": every field the caller chose, minus per-attempt ones."""
    same = generation_pb2.GenerateRequest()
    same.CopyFrom(request)
    for name in _PER_ATTEMPT_FIELDS:
        same.ClearField(name)  # type: ignore[arg-type]
    return hashlib.sha256(same.SerializeToString(deterministic=True)).digest()


@dataclass(slots=True)
class Found:
    """An existing record that answers the request without running it (anything but NEW)."""

    state: int
    stored: generation_pb2.StoredResponse | None = None
    executed: generation_pb2.ExecuteResponse | None = None
    max_cost: Decimal | None = None
    retry_after_seconds: int = 0


_SELECT = """
SELECT fingerprint, state, hold_id, request_id, max_cost, lease_until, executed, response_status, response_body,
       response_headers, now() AS now
FROM idempotent_requests WHERE user_id = $1 AND idempotency_key = $2
"""

#: Claim the key for this attempt: a new row, or take over a pending row whose lease ran out (same request).
_CLAIM = """
INSERT INTO idempotent_requests AS r
    (user_id, idempotency_key, fingerprint, state, hold_id, request_id, max_cost, lease_until)
VALUES ($1, $2, $3, 'pending', $4, $5, $6, now() + make_interval(secs => $7))
ON CONFLICT (user_id, idempotency_key) DO UPDATE
    SET hold_id = EXCLUDED.hold_id, request_id = EXCLUDED.request_id, max_cost = EXCLUDED.max_cost,
        lease_until = EXCLUDED.lease_until, updated_at = now()
    WHERE r.state = 'pending' AND r.lease_until < now() AND r.fingerprint = EXCLUDED.fingerprint
RETURNING 1
"""

_MARK_EXECUTED = """
UPDATE idempotent_requests SET state = 'executed', executed = $4, updated_at = now()
WHERE user_id = $1 AND idempotency_key = $2 AND hold_id = $3 AND state = 'pending'
"""

_COMPLETE = """
UPDATE idempotent_requests
SET state = 'completed', response_status = $4, response_body = $5, response_headers = $6::jsonb, updated_at = now()
WHERE user_id = $1 AND idempotency_key = $2 AND hold_id = $3 AND state IN ('executed', 'completed')
"""

_ABANDON = """
DELETE FROM idempotent_requests WHERE user_id = $1 AND idempotency_key = $2 AND hold_id = $3 AND state = 'pending'
"""

_PURGE = """
DELETE FROM idempotent_requests
WHERE created_at < now() - make_interval(hours => $1) AND (state <> 'pending' OR lease_until < now())
"""


class IdempotencyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, request: generation_pb2.GenerateRequest, digest: bytes) -> Found | None:
        """The record's answer for this request, or None when this attempt may (try to) claim the key."""
        row = await self._pool.fetchrow(_SELECT, request.user_id, request.idempotency_key)
        if row is None:
            return None
        return _answer(row, digest)

    async def claim(self, request: generation_pb2.GenerateRequest, digest: bytes, max_cost: Decimal) -> Found | None:
        """Claim the key for this attempt; None when claimed, else what another attempt left there."""
        for _ in range(3):  # the row may vanish (abandoned) between the two statements: look again
            claimed = await self._pool.fetchval(
                _CLAIM, request.user_id, request.idempotency_key, digest, request.hold_id, request.request_id,
                max_cost, max(1, request.idempotency_lease_seconds),
            )
            if claimed:
                return None
            found = await self.find(request, digest)
            if found is not None:
                return found
        return Found(State.IDEMPOTENT_IN_PROGRESS, retry_after_seconds=1)

    async def mark_executed(self, request: generation_pb2.GenerateRequest,
                            executed: generation_pb2.ExecuteResponse) -> bool:
        status = await self._pool.execute(
            _MARK_EXECUTED, request.user_id, request.idempotency_key, request.hold_id, executed.SerializeToString()
        )
        return status.endswith(" 1")

    async def complete(self, ref: generation_pb2.IdempotentRef, response: generation_pb2.StoredResponse) -> bool:
        status = await self._pool.execute(
            _COMPLETE, ref.user_id, ref.idempotency_key, ref.hold_id, response.status, response.body_json,
            json.dumps(dict(response.headers)),
        )
        return status.endswith(" 1")

    async def abandon(self, ref: generation_pb2.IdempotentRef) -> bool:
        status = await self._pool.execute(_ABANDON, ref.user_id, ref.idempotency_key, ref.hold_id)
        return status.endswith(" 1")

    async def purge(self, retention_hours: int) -> int:
        status = await self._pool.execute(_PURGE, retention_hours)
        return int(status.rsplit(" ", 1)[-1])


def _answer(row: asyncpg.Record, digest: bytes) -> Found | None:
    if bytes(row["fingerprint"]) != digest:
        return Found(State.IDEMPOTENT_MISMATCH)
    if row["state"] == "completed":
        stored = generation_pb2.StoredResponse(
            status=row["response_status"], body_json=row["response_body"],
            headers=json.loads(row["response_headers"] or "{}"),
        )
        return Found(State.IDEMPOTENT_REPLAY, stored=stored)
    if row["state"] == "executed":
        executed = generation_pb2.ExecuteResponse.FromString(bytes(row["executed"]))
        executed.hold_id = str(row["hold_id"])
        executed.request_id = row["request_id"]
        return Found(State.IDEMPOTENT_RESUME, executed=executed, max_cost=row["max_cost"])
    lease_until: datetime = row["lease_until"]
    now: datetime = row["now"]
    if lease_until < now:
        return None  # a dead attempt's claim: this one may take it over
    # The other attempt usually ends within seconds; the lease only bounds how long a dead one blocks.
    return Found(State.IDEMPOTENT_IN_PROGRESS, retry_after_seconds=min(IN_PROGRESS_RETRY_AFTER_SECONDS,
                 max(1, math.ceil((lease_until - now).total_seconds()))))
