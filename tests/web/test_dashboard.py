"""The usage dashboard: its numbers are the API's, its chart is drawn (by Chart.js), buying credits with the
test card shows the purchase pending and then the credits, and the low-credit alert can be set."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.helpers import TestUser
from tests.web.conftest import shoot, sign_in


def shown(value: object) -> str:
    """A number of credits as a person writes it: 1000, 12.5 (no exponent, no trailing zeros)."""
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _spend(api: httpx.Client, user: TestUser) -> None:
    made = api.post("/api/generate-structure", headers=user.headers,
                    json={"storyInput": {"title": "Numbers", "logline": "Counting"}, "template": "three-act"})
    assert made.status_code == 200, made.text
    failed = api.post("/api/generate-structure", headers={**user.headers, "X-Sim-Fault": "overloaded"},
                      json={"storyInput": {"title": "Fails", "logline": "Claude is busy"}, "template": "three-act"})
    assert failed.status_code >= 500, failed.text


def test_dashboard_numbers_are_the_apis(page: Page, writer: TestUser, api: httpx.Client, shots: Path) -> None:
    _spend(api, writer)
    sign_in(page, writer.api_key)
    page.get_by_role("link", name="Usage & credits").click()
    stats = api.get("/api/my-stats", headers=writer.headers).json()
    expect(page.locator("#balance")).to_have_text(shown(stats["user"]["credits_remaining"]))
    expect(page.locator("#held")).to_have_text(shown(stats["user"]["credits_held"]))
    expect(page.locator("#total-requests")).to_have_text(str(stats["usage"]["total_requests"]))
    expect(page.locator("#total-cost")).to_have_text(shown(stats["usage"]["total_cost"]))

    report = api.get("/api/my-usage-report", headers=writer.headers).json()
    endpoints = page.get_by_role("table", name=re.compile("By endpoint"))
    for group in report["byEndpoint"]:
        row = endpoints.get_by_role("row").filter(has_text=group["name"])
        expect(row).to_contain_text(f"{group['requests']}")
        expect(row.locator("td").nth(3)).to_have_text(shown(group["credits"]))
    calls = api.get("/api/my-calls", headers=writer.headers).json()["calls"]
    assert len(calls) == 2 and [c["success"] for c in calls] == [False, True]
    recent = page.get_by_role("table", name=re.compile("Your last calls"))
    for call in calls:
        expect(recent).to_contain_text(call["requestId"])
    expect(recent.locator("tr.failed")).to_have_count(1)
    ledger = api.get("/api/my-transactions", headers=writer.headers).json()["transactions"]
    expect(page.get_by_role("table", name=re.compile("Ledger")).locator("tbody tr")).to_have_count(len(ledger))

    # The chart is Chart.js's, fed with the report's days.
    drawn = page.evaluate("""() => { const c = Chart.getChart('spend-chart');
                                     return {labels: c.data.labels, credits: c.data.datasets[0].data}; }""")
    assert drawn["labels"] == [d["name"] for d in report["perDay"]]
    assert [Decimal(str(c)) for c in drawn["credits"]] == [Decimal(str(d["credits"])) for d in report["perDay"]]
    shoot(page, shots, "dashboard")


def test_buying_credits_with_the_test_card(page: Page, writer: TestUser, api: httpx.Client, shots: Path) -> None:
    packs = api.get("/api/credit-packs").json()
    assert packs["testMode"] is True
    pack = packs["packs"][0]
    sign_in(page, writer.api_key)
    page.goto("/app/dashboard#buy")
    page.get_by_label(re.compile(f"^{re.escape(pack['name'])}:")).check()
    page.get_by_role("button", name="Buy with the test card").click()
    expect(page.get_by_role("status").first).to_contain_text("Purchase of")
    # Pending until the webhook lands; the page polls and shows the credits when they arrive.
    expected = Decimal(500) + Decimal(str(pack["credits"]))
    expect(page.locator("#purchases-balance")).to_have_text(shown(expected), timeout=30_000)
    expect(page.locator("#purchases td.state").first).to_have_text("succeeded")
    # The tile at the top and the ledger follow, not only the purchases table.
    expect(page.locator("#balance")).to_have_text(shown(expected))
    expect(page.locator("#ledger tbody tr").first).to_contain_text("purchase")
    stats = api.get("/api/my-stats", headers=writer.headers).json()
    assert Decimal(str(stats["user"]["credits_remaining"])) == expected
    shoot(page, shots, "dashboard-purchase")

    page.get_by_label("Test card").fill("4000000000000341")
    page.get_by_role("button", name="Buy with the test card").click()
    expect(page.get_by_role("alert")).to_contain_text("declined", ignore_case=True)


def test_low_credit_alert_settings(page: Page, writer: TestUser, api: httpx.Client) -> None:
    sign_in(page, writer.api_key)
    page.goto("/app/dashboard")
    page.get_by_label(re.compile("^Threshold")).fill("42.5")
    page.get_by_role("button", name="Save alert").click()
    expect(page.get_by_role("status").first).to_contain_text("alert saved")
    assert api.get("/api/my-alerts", headers=writer.headers).json()["threshold"] == 42.5
    page.get_by_label(re.compile("^Threshold")).fill("not a number")
    page.get_by_role("button", name="Save alert").click()
    expect(page.get_by_role("alert")).to_contain_text("threshold")
    assert api.get("/api/my-alerts", headers=writer.headers).json()["threshold"] == 42.5
