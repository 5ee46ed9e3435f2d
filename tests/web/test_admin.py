"""The admin console: create a user (the key shown once), search and page the users, a user's page (grant
with a per-form idempotency key, rotate, disable and enable, rate limits), the system totals; and nobody
else can open any of it (404)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.helpers import TestUser, UserFactory
from tests.stack import Stack
from tests.web.conftest import shoot, sign_in


def test_admin_console(page: Page, stack: Stack, api: httpx.Client, users: UserFactory, shots: Path) -> None:
    admin = {"X-API-Key": stack.admin_key}
    sign_in(page, stack.admin_key)
    page.get_by_role("link", name="Users").click()
    name = f"newbie_{uuid.uuid4().hex[:8]}"
    page.get_by_label("Username", exact=True).fill(name)
    page.get_by_label("Email", exact=True).fill(f"{name}@example.test")
    page.get_by_label("Initial credits").fill("20")
    page.get_by_role("button", name="Create user").click()
    key = page.locator("#new-key").inner_text()
    assert api.get("/api/my-stats", headers={"X-API-Key": key}).json()["user"]["credits_remaining"] == 20
    shoot(page, shots, "admin-users")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)  # shown once

    # Search by a prefix, live as the admin types.
    page.get_by_label("Search by username or email prefix").fill(name[:10])
    rows = page.get_by_role("table", name=re.compile("Users")).locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(name)
    rows.first.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()

    # Grant: the form's idempotency key makes a double submit grant once.
    page.get_by_label("Credits", exact=True).fill("25")
    page.get_by_label("Notes", exact=True).fill("welcome")
    form = page.locator("form[action$='/grant']")
    fields = {n: form.locator(f"input[name={n}]").input_value() for n in ("csrf_token", "idem", "credits", "notes")}
    form.get_by_role("button", name="Grant").click()
    expect(page.get_by_role("status").first).to_contain_text("25 credits granted")
    expect(page.locator("#balance")).to_have_text("45")
    again = page.request.post(f"/app/admin/users/{name}/grant", form=fields)
    assert again.status == 200 and "already granted by this form" in again.text()
    stats = api.get(f"/api/admin/usage-stats/{name}", headers=admin).json()
    assert stats["user"]["credits_remaining"] == 45
    ledger = api.get(f"/api/admin/users/{name}/transactions", headers=admin).json()["transactions"]
    expect(page.get_by_role("table", name=re.compile("Ledger")).locator("tbody tr")).to_have_count(len(ledger))
    shoot(page, shots, "admin-user")

    # Rate limits, as the API then reports them.
    page.get_by_label("Requests per minute").fill("7")
    page.get_by_label("Concurrent calls").fill("")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_role("status").first).to_contain_text("Rate limits saved")
    limits = api.get(f"/api/admin/users/{name}/limits", headers=admin).json()
    assert limits["requests_per_minute"] == 7 and limits["max_concurrent"] is None

    # Disable, enable, rotate.
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status").first).to_contain_text("User disabled")
    assert api.get("/api/my-stats", headers={"X-API-Key": key}).status_code == 401
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status").first).to_contain_text("User enabled")
    assert api.get("/api/my-stats", headers={"X-API-Key": key}).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate API key").click()
    new_key = page.locator("#new-key").inner_text()
    assert new_key != key
    assert api.get("/api/my-stats", headers={"X-API-Key": key}).status_code == 401
    assert api.get("/api/my-stats", headers={"X-API-Key": new_key}).status_code == 200


def test_an_admin_grant_shows_on_the_users_own_page(page: Page, stack: Stack, writer: TestUser) -> None:
    sign_in(page, stack.admin_key)
    page.goto(f"/app/admin/users/{writer.username}")
    page.get_by_label("Credits", exact=True).fill("12")
    page.get_by_role("button", name="Grant").click()
    expect(page.locator("#balance")).to_have_text("512")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, writer.api_key)
    page.goto("/app/dashboard")
    expect(page.locator("#balance")).to_have_text("512")
    ledger = page.get_by_role("table", name=re.compile("Ledger"))
    expect(ledger.locator("tbody tr").first).to_contain_text("12")


def test_system_page(page: Page, stack: Stack, writer: TestUser, api: httpx.Client, shots: Path) -> None:
    failed = api.post("/api/generate-structure", headers={**writer.headers, "X-Sim-Fault": "bad_schema"},
                      json={"storyInput": {"title": "Broken", "logline": "It breaks"}, "template": "three-act"})
    assert failed.status_code >= 500
    request_id = failed.headers["X-Request-ID"]
    sign_in(page, stack.admin_key)
    page.get_by_role("link", name="System").click()
    report = api.get("/api/admin/usage-report", headers={"X-API-Key": stack.admin_key}).json()
    today = report["perDay"][-1]
    row = page.get_by_role("table", name=re.compile("Totals per day")).locator("tbody tr").first
    expect(row.locator("td")).to_have_text([today["name"], str(today["requests"]), str(today["tokens"]),
                                            re.compile(r"[\d.]+"), str(today["failed"])])
    failures = page.get_by_role("table", name=re.compile("Failed calls"))
    expect(failures).to_contain_text(request_id)
    expect(failures.get_by_role("row").filter(has_text=request_id)).to_contain_text("failed:")
    expect(page.get_by_role("table", name="Most credits charged").locator("tbody tr")).to_have_count(
        len(report["topUsers"]) or 1)
    shoot(page, shots, "admin-system")


def test_a_user_cannot_open_admin_pages(page: Page, writer: TestUser) -> None:
    sign_in(page, writer.api_key)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    for path in ("/app/admin", "/app/admin/system", f"/app/admin/users/{writer.username}"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(f"/app/admin/users/{writer.username}/grant", form={"credits": "100",
                                                                                   "csrf_token": csrf or ""})
    assert refused.status == 404
    assert page.request.get("/api/my-stats").status == 401  # the session cookie is no API key
