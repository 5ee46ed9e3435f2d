"""Credit amounts as they enter the system: parse_credits refuses anything that is not a finite decimal with
at most 4 places within (0, MAX_AMOUNT], always as InvalidAmount (never a raw decimal exception)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.money import MAX_AMOUNT, InvalidAmount, parse_credits


@pytest.mark.parametrize("text", ["1e30", "-1e30", "1e-30", "9" * 60, "1e999999999", "NaN", "sNaN", "Infinity",
                                  "-Infinity", "abc", "", "1.00005", "0", "-1", "100000000.0001"])
def test_refused_amounts_are_invalid_amount(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_credits(text)


@pytest.mark.parametrize(("text", "expected"), [("1", "1.0000"), ("2.43", "2.4300"), ("0.0001", "0.0001"),
                                                ("1E+2", "100.0000"), (str(MAX_AMOUNT), "100000000.0000")])
def test_accepted_amounts_are_exact_to_4_places(text: str, expected: str) -> None:
    assert str(parse_credits(text)) == expected


def test_zero_only_where_allowed() -> None:
    assert parse_credits("0", allow_zero=True) == Decimal("0.0000")
    assert parse_credits(Decimal("0.0000"), allow_zero=True) == 0
