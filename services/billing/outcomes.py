"""Billing's named answers, written once: what a Reserve decided and how a settlement ended.

The SQL functions answer these strings (migrations/functions/billing_reserve.sql, billing_settle.sql), the
servicer carries them as the proto enums of the same names (`billing_pb2.Reason`, `billing_pb2.Outcome`),
and the edge maps each proto value to its HTTP answer in one table (edge/outcomes.py). A test checks that
the three agree member for member.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """What a Reserve decided (or what an idempotency key's record says)."""

    OK = "ok"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    REQUESTS_PER_MINUTE = "requests_per_minute"
    MAX_CONCURRENT = "max_concurrent"
    KEY_REPLAY = "key_replay"
    KEY_IN_PROGRESS = "key_in_progress"
    KEY_MISMATCH = "key_mismatch"
    HOLD_VOIDED = "hold_voided"

    @property
    def proto_name(self) -> str:
        """The proto enum value's name (`REASON_UNSPECIFIED` means ok)."""
        return "REASON_UNSPECIFIED" if self is Reason.OK else self.name


class Outcome(StrEnum):
    """How a settlement ended (TigerBeetle's results for posting and voiding a pending transfer)."""

    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"
    ALREADY_POSTED = "already_posted"
    ALREADY_VOIDED = "already_voided"
    ALREADY_EXPIRED = "already_expired"
    EXISTS_WITH_DIFFERENT_AMOUNT = "exists_with_different_amount"


#: What a caller may ask a settlement to do; the rest of `Outcome` are answers only.
RESOLUTIONS = frozenset({Outcome.POSTED, Outcome.VOIDED, Outcome.EXPIRED})
