"""The session's security basics: the cookie's flags, sign-out and rotation revoke server-side, an expired or
idle session is refused, a forged cross-site form is refused (served by a second origin), and the API key
appears in no page after sign-in and in no log."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.helpers import TestUser, UserFactory, key_leaks
from tests.stack import Stack, free_port
from tests.web.conftest import shoot, sign_in


def _sql(stack: Stack, statement: str, *args: object) -> None:
    """One statement on the stack's database, from a thread of its own: the sync Playwright API keeps an event
    loop running in this one."""
    async def run() -> None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def _fetch(stack: Stack, query: str, *args: object) -> list[object]:
    """The first column of a query's rows, read as `_sql` writes."""
    async def run() -> list[object]:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return [row[0] for row in await conn.fetch(query, *args)]
        finally:
            await conn.close()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def _session_cookie(context: BrowserContext) -> dict[str, object]:
    [cookie] = [c for c in context.cookies() if c["name"] == "fsg_session"]
    return dict(cookie)


def _with_cookie(stack: Stack, token: str, path: str = "/app") -> httpx.Response:
    with httpx.Client(base_url=stack.edge_url, cookies={"fsg_session": token}) as http:
        return http.get(path, headers={"Accept": "text/html"})


def test_cookie_flags(page: Page, context: BrowserContext, writer: TestUser, stack: Stack) -> None:
    sign_in(page, writer.api_key)
    cookie = _session_cookie(context)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http here; over TLS it is Secure (below)
    assert cookie["path"] == "/app"
    assert float(str(cookie["expires"])) > 0  # expires with the session, not a browser-lifetime cookie
    # No script can read it, and neither it nor the key is in the page's storage (htmx keeps its path there).
    assert page.evaluate("document.cookie") == ""
    storage = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert str(cookie["value"]) not in storage and not key_leaks(writer.api_key, storage)

    # Behind a TLS-terminating proxy (X-Forwarded-Proto from a trusted address) the cookie is Secure.
    host = httpx.URL(stack.edge_url).netloc.decode()
    signed = httpx.post(f"{stack.edge_url}/app/sign-in", data={"api_key": writer.api_key},
                        headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"})
    assert signed.status_code == 303
    flags = signed.headers["set-cookie"].lower()
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags


def test_sign_out_revokes_the_session_server_side(page: Page, context: BrowserContext, writer: TestUser,
                                                  stack: Stack) -> None:
    sign_in(page, writer.api_key)
    token = str(_session_cookie(context)["value"])
    assert _with_cookie(stack, token).status_code == 200
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))
    # The old cookie, replayed by anyone who kept it, no longer works.
    refused = _with_cookie(stack, token)
    assert refused.status_code == 303 and refused.headers["location"] == "/app/sign-in"


@pytest.mark.parametrize("action", ["rotate-key", "disable"])
def test_a_rotated_key_or_a_disabled_user_ends_its_sessions(page: Page, users: UserFactory, api: httpx.Client,
                                                            stack: Stack, action: str) -> None:
    user = users.create(credits=10, prefix="ended")
    sign_in(page, user.api_key)
    ended = api.post(f"/api/admin/users/{user.username}/{action}", headers={"X-API-Key": stack.admin_key})
    assert ended.status_code == 200
    page.goto("/app/dashboard")
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
def test_an_expired_or_idle_session_is_refused(page: Page, context: BrowserContext, writer: TestUser,
                                               stack: Stack, column: str) -> None:
    sign_in(page, writer.api_key)
    token = str(_session_cookie(context)["value"])
    # Its lifetime (expires_at) or its idle timeout (last_seen_at + AUTH_SESSION_IDLE_SECONDS) has passed.
    _sql(stack, f"UPDATE web_sessions SET {column} = now() - interval '2 days', created_at = now() - interval "
                "'3 days' WHERE token_hash = sha256($1::text::bytea)", token)
    page.goto("/app")
    expect(page).to_have_url(re.compile(r"/app/sign-in$"))
    assert _with_cookie(stack, token).status_code == 303


def test_a_bad_key_is_refused_without_echoing_it(page: Page, stack: Stack, shots: Path) -> None:
    page.goto("/app/sign-in")
    wrong = "user_" + "0" * 64
    page.get_by_label("API key").fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert wrong not in page.content()
    expect(page.get_by_label("API key")).to_have_value("")
    shoot(page, shots, "sign-in-refused")


class _Evil(http.server.BaseHTTPRequestHandler):
    """Another origin's page: a form that posts to the app as soon as it loads."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def evil_origin() -> Iterator[tuple[str, type[_Evil]]]:
    handler = type("Evil", (_Evil,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_forged_cross_site_form_is_refused(page: Page, context: BrowserContext, users: UserFactory,
                                             api: httpx.Client, stack: Stack,
                                             evil_origin: tuple[str, type[_Evil]]) -> None:
    """The admin is signed in; another origin's page (same host, another port: the same *site*, so even
    SameSite=Strict sends the cookie) posts a grant form. Only the CSRF token stops it, and it does."""
    target = users.create(credits=5, prefix="target")
    sign_in(page, stack.admin_key)
    url, handler = evil_origin
    handler.page = f"""<!doctype html><form id="f" method="post"
        action="{stack.edge_url}/app/admin/users/{target.username}/grant">
        <input name="credits" value="1000000"><input name="idem" value="forged"></form>
        <script>document.getElementById('f').submit()</script>""".encode()
    with page.expect_response(re.compile(r"/grant$")) as answer:
        page.goto(url)
    assert answer.value.status == 403
    expect(page.locator("body")).to_contain_text("CSRF check failed")
    assert users.balance(target) == Decimal(5)
    # With the victim's cookie but without the page's token, or with it from another origin: refused too.
    token = page.request.post(f"/app/admin/users/{target.username}/grant", form={"credits": "7"})
    assert token.status == 403
    page.goto(f"/app/admin/users/{target.username}")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    other = page.request.post(f"/app/admin/users/{target.username}/grant", form={"credits": "7", "csrf_token": csrf},
                              headers={"Origin": url})
    assert other.status == 403
    assert users.balance(target) == Decimal(5)
    # The same token from the page itself works: the refusals above were the CSRF check, nothing else.
    ok = page.request.post(f"/app/admin/users/{target.username}/grant", form={"credits": "7", "csrf_token": csrf})
    assert ok.status == 200
    assert users.balance(target) == Decimal(12)


def test_the_key_appears_in_no_page_and_no_log(page: Page, writer: TestUser, stack: Stack) -> None:
    sign_in(page, writer.api_key)
    seen = []
    for path in ("/app", "/app/projects/new", "/app/dashboard"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        seen.append(page.content())
    assert not key_leaks(writer.api_key, "\n".join(seen))
    for service in ("edge", "auth", "billing", "generation"):
        assert not key_leaks(writer.api_key, stack.log(service)), service


def test_sign_in_sweeps_sessions_long_past_their_end(page: Page, users: UserFactory, stack: Stack) -> None:
    gone, kept = users.create(credits=0, prefix="gone"), users.create(credits=0, prefix="kept")
    for user in (gone, kept):
        sign_in(page, user.api_key)
        page.context.clear_cookies()
    _sql(stack, "UPDATE web_sessions SET created_at = now() - interval '9 days', expires_at = now() - interval "
                "'8 days' WHERE user_id = $1", gone.id)
    sign_in(page, kept.api_key)
    remaining = _fetch(stack, "SELECT user_id FROM web_sessions WHERE user_id = ANY($1::bigint[])", [gone.id, kept.id])
    assert sorted(remaining) == [kept.id, kept.id]  # its live session and the new one; none of gone's


def test_sign_in_from_another_origin_is_refused(writer: TestUser, stack: Stack) -> None:
    """No session yet, so no CSRF token: another site cannot sign a visitor in (as anyone) either."""
    with httpx.Client(base_url=stack.edge_url) as http:
        refused = http.post("/app/sign-in", data={"api_key": writer.api_key},
                            headers={"Origin": "http://evil.example", "Accept": "application/json"})
        assert refused.status_code == 403 and refused.json()["error"] == "CSRF check failed"
        assert "set-cookie" not in refused.headers
        assert not key_leaks(writer.api_key, refused.text)
