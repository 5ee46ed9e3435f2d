"""Browser tests of the web app (/app): Playwright for Python driving Debian's Chromium (/usr/bin/chromium;
Playwright's own browser download cannot work here) against the session's real stack.

Without /usr/bin/chromium the tests skip with that reason on a developer machine; CI (.ci/run installs
chromium and sets FSG_REQUIRE_BROWSER=1) fails instead of skipping. Every page a test visits is
screenshotted into test-artifacts/screenshots/ (FSG_SCREENSHOTS_DIR to put them elsewhere, e.g. docs/screenshots
to refresh the README's set)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, Playwright, sync_playwright

from common.settings import REPO_ROOT
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("FSG_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"{CHROMIUM} is missing and FSG_REQUIRE_BROWSER is set (CI must run the browser "
                                "tests): apt-get install -y chromium")
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser tests")
    for item in items:
        if "tests/web/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM)}


# pytest-playwright's own `playwright`, `browser_type` and `browser` live for the whole session, and the sync
# API keeps an event loop marked running while it lives: every later asyncio.run (a stack's bootstrap) or
# async test would fail. Here they live for this package only, started after the stack (which needs asyncio).
@pytest.fixture(scope="package")
def playwright(stack: Stack) -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="package")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.edge_url


@pytest.fixture(scope="session")
def shots() -> Path:
    where = Path(os.environ.get("FSG_SCREENSHOTS_DIR") or REPO_ROOT / "test-artifacts" / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def shoot(page: Page, shots: Path, name: str) -> None:
    """The page as the visitor sees it, kept as an artifact (whole page)."""
    page.screenshot(path=str(shots / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"), full_page=True)


def sign_in(page: Page, key: str) -> None:
    page.goto("/app/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app$"))


@pytest.fixture
def writer(users: UserFactory) -> TestUser:
    return users.create(credits=500, prefix="writer")


@pytest.fixture
def context(browser: Browser, base_url: str) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=base_url, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def api(client: httpx.Client) -> httpx.Client:
    return client
