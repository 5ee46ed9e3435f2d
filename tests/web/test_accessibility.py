"""Accessibility: the studio driven by the keyboard alone, every form control labelled, and the pages usable
at phone width (nothing wider than the screen)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import TestUser
from tests.stack import Stack
from tests.web.conftest import shoot, sign_in

#: Every page a signed-in admin can open, for the label and width checks.
PAGES = ("/app", "/app/projects/new", "/app/dashboard", "/app/admin", "/app/admin/system")


def _tab_to(page: Page, name: str, most: int = 60) -> None:
    """Press Tab until the focused element is the one named `name` (fails if it never is)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement;
            if (!e || e === document.body) return '';
            return (e.labels && e.labels[0] ? e.labels[0].innerText : '') + '|' + e.innerText; }""")
        if name in focused:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_keyboard_only_studio(page: Page, writer: TestUser, api: httpx.Client) -> None:
    page.goto("/app/sign-in")
    # The key field has the focus as the page opens.
    assert page.evaluate("document.activeElement.id") == "api_key"
    page.keyboard.type(writer.api_key)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/app$"))
    # The first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.innerText") == "Skip to content"
    _tab_to(page, "New project")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/app/projects/new$"))
    for label, text in (("Title", "Keys Only"), ("Logline", "A pianist who cannot use a mouse")):
        _tab_to(page, label)
        page.keyboard.type(text)
    templates = api.get("/api/templates", headers=writer.headers).json()["templates"]
    first, three_act = templates[0]["name"], next(t["name"] for t in templates if t["id"] == "three-act")
    _tab_to(page, first)  # the template picker: Tab enters the radio group, the arrow keys choose
    for _ in templates:
        if page.evaluate("document.activeElement.labels[0].innerText") == three_act:
            break
        page.keyboard.press("ArrowDown")
    expect(page.get_by_label(three_act, exact=True)).to_be_checked()
    expect(page.locator("#quote .quote")).to_contain_text("at least")
    _tab_to(page, "Write the structure")
    page.keyboard.press("Enter")
    expect(page.locator("#charged")).to_be_visible(timeout=30_000)
    # The next step is reachable and runs from the keyboard too.
    _tab_to(page, "Write plot points for")
    page.keyboard.press("Enter")
    expect(page.locator("#charged")).to_contain_text("Plot points for Act One")
    [project] = api.get("/api/projects", headers=writer.headers).json()["projects"]
    assert project["title"] == "Keys Only"


def test_every_control_is_labelled_and_nothing_comes_from_elsewhere(page: Page, stack: Stack) -> None:
    """Every control has a label; every request a page makes goes to this site (no CDN: the browser would
    also refuse one, by the pages' Content-Security-Policy); and no page logs an error (a CSP violation is
    one)."""
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, stack.admin_key)
    for path in PAGES:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert "frame-ancestors 'none'" in page.request.get(path).headers["content-security-policy"]
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.innerText.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], path
    assert requests and all(url.startswith(stack.edge_url + "/") for url in requests), requests
    assert errors == []


@pytest.mark.parametrize("width", [390])
def test_phone_width(browser: Browser, base_url: str, stack: Stack, shots: Path, width: int) -> None:
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, stack.admin_key)
        for path in PAGES:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {width}px screen"
            shoot(page, shots, f"phone-{path.strip('/').replace('/', '-')}")
    finally:
        context.close()
