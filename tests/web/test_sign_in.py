"""Sign-in with an API key exchanged for a session cookie, sign-out, expiry, and the cookie's flags."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.helpers import TestUser
from tests.web.conftest import shoot, sign_in


def test_sign_in_and_out(page: Page, context: BrowserContext, writer: TestUser, shots: Path) -> None:
    page.goto("/app")
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))
    shoot(page, shots, "sign-in")
    sign_in(page, writer.api_key)
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    expect(page.get_by_text(writer.username)).to_be_visible()
    shoot(page, shots, "studio")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))
    page.goto("/app")
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))
    assert not [c for c in context.cookies() if c["name"] == "fsg_session"]
