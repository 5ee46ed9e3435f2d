"""The one rounding rule, pinned to numbers worked out by hand (not by the code under test): README's example,
costs that round up, and a price table that changes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from common.money import cost_credits
from services.generation.pricing import PriceTable

D = Decimal


def test_readmes_example_is_exactly_1_0500_credits() -> None:
    """$3/$15 per million tokens, 1,000 in and 500 out: 0.003 + 0.0075 = $0.0105 = 1.05 cents."""
    assert cost_credits(1000, 500, D(3), D(15)) == D("1.0500")


@pytest.mark.parametrize(("tokens_in", "tokens_out", "usd_in", "usd_out", "credits"), [
    (1, 0, "2.5", "0", "0.0003"),        # $0.0000025 = 0.00025 cents → up to 0.0003
    (1, 0, "0.01", "0", "0.0001"),       # 0.000001 cents → the smallest unit, never 0
    (0, 7, "0", "15", "0.0105"),         # 7 × $0.000015 = 0.0105 cents: exact, not rounded
    (333, 1, "3", "15", "0.1014"),       # 0.0999 + 0.0015 = 0.1014 cents: exact
    (1234, 567, "2", "10", "0.8138"),    # 0.2468 + 0.567 = 0.8138 cents
    (1235, 567, "2.2", "10.1", "0.8444"),  # 0.2717 + 0.57267 = 0.84437 → up to 0.8444
    (0, 0, "3", "15", "0"),
])
def test_costs_round_up_to_a_hundredth_of_a_cent(tokens_in: int, tokens_out: int, usd_in: str, usd_out: str,
                                                 credits: str) -> None:
    assert cost_credits(tokens_in, tokens_out, D(usd_in), D(usd_out)) == D(credits)


def test_a_price_table_change_changes_the_charge(tmp_path: Path) -> None:
    def table(usd_in: str, usd_out: str) -> PriceTable:
        path = tmp_path / f"models-{usd_in}-{usd_out}.json"
        path.write_text(json.dumps({"default": "claude-test", "models": [
            {"id": "claude-test", "input_usd_per_mtok": usd_in, "output_usd_per_mtok": usd_out}]}))
        return PriceTable.load(path)

    assert table("3", "15").resolve("").cost(1000, 500) == D("1.0500")
    assert table("6", "30").resolve("").cost(1000, 500) == D("2.1000")   # doubled prices, doubled charge
    assert table("3", "16").resolve("claude-test").cost(1000, 500) == D("1.1000")  # only the output price moved
