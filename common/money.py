"""Exact money: credits as `Decimal` with 4 places, never floats.

1 credit = 1 US cent. Amounts are stored as NUMERIC(18,4) and travel between services as decimal
strings. The one rounding rule: a cost is computed exactly from token counts and USD-per-million-token
prices, then rounded *up* (ROUND_CEILING) to 0.0001 credit, so we never charge less than the provider
charges us and the rounding error is at most 1/100 of a cent per call.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

QUANTUM = Decimal("0.0001")
ZERO = Decimal("0.0000")
#: No single grant or hold may exceed this (one million dollars); guards against absurd input.
MAX_AMOUNT = Decimal("100000000")
#: USD per million tokens → credits per token: x USD/M = 100x cents / 1e6 tokens.
_CENTS_PER_USD_PER_MTOK = Decimal(100) / Decimal(1_000_000)


class InvalidAmount(ValueError):
    """A credit amount that is not a finite decimal with at most 4 places, or out of range."""


def parse_credits(value: str | int | Decimal, *, allow_zero: bool = False) -> Decimal:
    """Parse a credit amount strictly: finite, at most 4 decimal places, within (0, MAX_AMOUNT]."""
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError) as exc:
        raise InvalidAmount(f"not a decimal amount: {value!r}") from exc
    if not amount.is_finite():
        raise InvalidAmount("amount must be finite")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount("amount must be positive")
    # Before quantizing: a huge value ("1e30") has more digits than the context can quantize to 4 places.
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"amount exceeds the maximum of {MAX_AMOUNT}")
    if amount != amount.quantize(QUANTUM, rounding=ROUND_CEILING):
        raise InvalidAmount("amount has more than 4 decimal places")
    return amount.quantize(QUANTUM)


def to_wire(amount: Decimal) -> str:
    """The canonical wire form between services: fixed point, 4 places ("12.3400")."""
    return str(amount.quantize(QUANTUM))


def from_wire(text: str) -> Decimal:
    """Inverse of `to_wire`; an empty string is zero."""
    return Decimal(text).quantize(QUANTUM) if text else ZERO


def for_json(amount: Decimal) -> Decimal:
    """A Decimal without trailing zeros or exponent, so JSON shows `100` and `2.43`, not `1E+2`."""
    text = format(amount.quantize(QUANTUM), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text)


def cost_credits(
    input_tokens: int,
    output_tokens: int,
    input_usd_per_mtok: Decimal,
    output_usd_per_mtok: Decimal,
) -> Decimal:
    """Credits for a call: exact price × tokens, rounded up to 0.0001 credit (the one rounding rule)."""
    if input_tokens < 0 or output_tokens < 0:
        raise InvalidAmount("token counts must be non-negative")
    exact = (input_tokens * input_usd_per_mtok + output_tokens * output_usd_per_mtok) * _CENTS_PER_USD_PER_MTOK
    return exact.quantize(QUANTUM, rounding=ROUND_CEILING)
