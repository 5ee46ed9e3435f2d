"""When Claude bills more than a call's worst case (the hold), the user is charged the hold and no more; the
rest is ours, written in the usage row's provider_cost and counted in fsg_credits_absorbed_total."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

import asyncpg
import httpx

from tests.generation.test_endpoints import make_project, post
from tests.helpers import UserFactory, metric
from tests.reliability.support import assert_books_balance

#: A model with the guide's prices, named so the expected cost below is computed from these, not the table.
MODEL, INPUT_USD_PER_MTOK, OUTPUT_USD_PER_MTOK = "claude-sonnet-4-6", 3, 15
BILLED_INPUT_TOKENS = 5_000_000  # $15 of input: far over any scene's worst case


def absorbed(client: httpx.Client, endpoint: str) -> float:
    return metric(client, "fsg_credits_absorbed_total", endpoint=endpoint)


async def test_a_bill_above_the_hold_charges_the_hold_and_counts_the_rest(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=100)
    path = make_project(client, user)
    before = absorbed(client, "/api/generate-scene")
    response = post(client, user, f"/api/generate-scene/{path}/setup", {"model": MODEL},
                    **{"X-Sim-Fault": f"input_tokens:{BILLED_INPUT_TOKENS}"})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["input_tokens"] == BILLED_INPUT_TOKENS

    row = await db.fetchrow(
        """SELECT h.amount AS held, u.credits_cost, u.provider_cost FROM usage_logs u
           JOIN credit_holds h ON h.id = u.hold_id WHERE u.request_id = $1""", response.headers["X-Request-ID"])
    cents = (Decimal(BILLED_INPUT_TOKENS * INPUT_USD_PER_MTOK + usage["output_tokens"] * OUTPUT_USD_PER_MTOK)
             / 10_000)
    provider_cost = cents.quantize(Decimal("0.0001"), rounding=ROUND_CEILING)
    assert provider_cost > 1500  # $15 of input alone
    charged = Decimal(response.headers["X-Credits-Charged"])
    assert charged == row["held"] == row["credits_cost"] < provider_cost
    assert row["provider_cost"] == provider_cost
    assert math.isclose(absorbed(client, "/api/generate-scene") - before, float(provider_cost - charged),
                        rel_tol=1e-9)
    books = await assert_books_balance(db, user.id)
    assert books.available == Decimal(str(response.json()["usage"]["credits_remaining"]))
