"""The writer's studio in a real browser: logline → structure → plot points → scenes → dialogue → character
profiles → a Fountain download that screenplain parses, each step showing its price before and its charge
after, all equal to what the API and the ledger say."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

import httpx
from playwright.sync_api import BrowserContext, Page, expect
from screenplain.parsers import fountain
from screenplain.types import Dialog, Slug

from tests.helpers import TestUser, UserFactory
from tests.web.conftest import shoot, sign_in

STORY = {"title": "The Lighthouse Keeper", "logline": "A lighthouse keeper finds a message in a bottle from herself",
         "characters": "MARA, the keeper; TOM, the supply boat captain", "genre": "Mystery", "tone": "Quiet, eerie"}


def _charged(page: Page) -> tuple[Decimal, Decimal]:
    """The charge and the new balance the page shows after a step."""
    notice = page.locator("#charged")
    expect(notice).to_be_visible()
    numbers = notice.locator("strong").all_inner_texts()
    return Decimal(numbers[1]), Decimal(numbers[2])


def _ledger_balance(api: httpx.Client, user: TestUser) -> Decimal:
    stats = api.get("/api/my-stats", headers=user.headers).json()
    return Decimal(str(stats["user"]["credits_remaining"]))


def _run_step(page: Page, name: str, api: httpx.Client, user: TestUser) -> Decimal:
    """Click a step (after its quote has loaded), check the charge against the ledger; returns the charge."""
    form = page.locator("form.step", has=page.get_by_role("button", name=name)).first
    expect(form.locator(".quote")).to_contain_text("Holds at least")
    before = _ledger_balance(api, user)
    form.get_by_role("button", name=name).click()
    charged, balance = _charged(page)
    assert balance == _ledger_balance(api, user) == before - charged
    assert charged > 0
    return charged


def test_logline_to_fountain(page: Page, writer: TestUser, api: httpx.Client, shots: Path) -> None:
    sign_in(page, writer.api_key)
    page.get_by_role("link", name="New project").click()
    for field, value in STORY.items():
        page.get_by_label(field.capitalize(), exact=False).first.fill(value)
    templates = api.get("/api/templates", headers=writer.headers).json()["templates"]
    three_act = next(t for t in templates if len(t["acts"]) == 3)
    page.get_by_label(three_act["name"], exact=True).check()
    # The template picker shows each template's acts.
    for act in three_act["acts"]:
        expect(page.locator(f"#acts-{three_act['id']}")).to_contain_text(act["name"])
    # Before the click: the minimum and worst case, as the quote API answers them (nothing held).
    quote = api.post("/api/quote/generate-structure", headers=writer.headers,
                     json={"storyInput": STORY, "template": three_act["id"]}).json()
    expect(page.locator("#quote")).to_contain_text(f"at least {quote['minimum']}")
    expect(page.locator("#quote")).to_contain_text(f"worst case {quote['worstCase']}")
    assert _ledger_balance(api, writer) == Decimal(500)
    shoot(page, shots, "new-project")

    page.get_by_role("button", name="Write the structure").click()
    charged, balance = _charged(page)
    assert Decimal(0) < charged <= Decimal(str(quote["hold"]))
    assert balance == _ledger_balance(api, writer) == Decimal(500) - charged
    path = page.url.rsplit("/", 1)[-1] if "/projects/" in page.url else None
    projects = api.get("/api/projects", headers=writer.headers).json()["projects"]
    assert [p["title"] for p in projects] == [STORY["title"]]
    path = projects[0]["projectPath"]

    page.goto(f"/app/projects/{path}")
    for act in three_act["acts"]:
        _run_step(page, f"Write plot points for {act['name']}", api, writer)
        _run_step(page, f"Write scenes for {act['name']}", api, writer)
    shoot(page, shots, "project")
    _run_step(page, f"Write dialogue for scene 1 of {three_act['acts'][0]['name']}", api, writer)
    _run_step(page, "Write character profiles", api, writer)

    document = api.get(f"/api/projects/{path}", headers=writer.headers).json()
    sluglines = [s["slugline"] for act in three_act["acts"] for s in document["scenes"][act["key"]]]
    # The screenplay is readable in the page.
    expect(page.locator("pre.screenplay")).to_contain_text(sluglines[0].upper())

    with page.expect_download() as download:
        page.get_by_role("link", name="Download Fountain").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text == api.get(f"/api/projects/{path}/export", params={"format": "fountain"},
                           headers=writer.headers).text
    screenplay = fountain.parse(io.StringIO(text))
    assert screenplay.title_page["Title"] == [STORY["title"]]
    paragraphs = list(screenplay)
    assert [str(p.line) for p in paragraphs if isinstance(p, Slug)] == [s.upper() for s in sluglines]
    assert any(isinstance(p, Dialog) for p in paragraphs)
    for fmt, name in (("text", "Download text"), ("json", "Download JSON")):
        with page.expect_download() as download:
            page.get_by_role("link", name=name).click()
        assert Path(download.value.path()).read_bytes() == api.get(
            f"/api/projects/{path}/export", params={"format": fmt}, headers=writer.headers).content

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this project").click()
    expect(page).to_have_url(re.compile(r"/app$"))
    assert api.get("/api/projects", headers=writer.headers).json()["projects"] == []


def test_402_shows_balance_and_buy_link(page: Page, users: UserFactory, api: httpx.Client, shots: Path) -> None:
    poor = users.create(credits=3, prefix="poor")
    sign_in(page, poor.api_key)
    page.goto("/app/projects/new")
    page.get_by_label("Title").fill("Broke")
    page.get_by_label("Logline").fill("Nobody can pay for this")
    # The price warns before the click, too.
    expect(page.locator("#quote")).to_contain_text("not enough for this step")
    page.get_by_role("button", name="Write the structure").click()
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("Insufficient credits")
    expect(problem).to_contain_text("Your balance: 3")
    expect(problem.get_by_role("link", name="Buy credits")).to_have_attribute("href", "/app/dashboard#buy")
    # The form keeps what was typed, and nothing was charged or created.
    expect(page.get_by_label("Title")).to_have_value("Broke")
    assert _ledger_balance(api, poor) == Decimal(3)
    assert api.get("/api/projects", headers=poor.headers).json()["projects"] == []
    shoot(page, shots, "insufficient-credits")


def test_another_users_project_is_404(page: Page, writer: TestUser, users: UserFactory, api: httpx.Client) -> None:
    owner = users.create(credits=100, prefix="owner")
    made = api.post("/api/generate-structure", headers=owner.headers,
                    json={"storyInput": {"title": "Mine", "logline": "Only mine"}, "template": "three-act"})
    assert made.status_code == 200, made.text
    path = made.json()["projectPath"]
    sign_in(page, writer.api_key)
    for url in (f"/app/projects/{path}", f"/app/projects/{path}/export?format=fountain"):
        response = page.goto(url)
        assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("not found", ignore_case=True)
    # Nor can the writer delete it: the owner still has it.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    refused = page.request.post(f"/app/projects/{path}/delete", form={"csrf_token": csrf})
    assert refused.status == 404
    assert api.get(f"/api/projects/{path}", headers=owner.headers).status_code == 200


def test_a_failed_step_says_not_charged(page: Page, context: BrowserContext, writer: TestUser, api: httpx.Client,
                                        shots: Path) -> None:
    """Claude fails after its retries (the simulator's fault, sent as the API takes it): a 5xx page that says
    the writer was not charged, which the ledger confirms."""
    sign_in(page, writer.api_key)
    page.goto("/app/projects/new")
    page.get_by_label("Title").fill("Stormy")
    page.get_by_label("Logline").fill("Claude is overloaded today")
    context.set_extra_http_headers({"X-Sim-Fault": "overloaded"})
    page.get_by_role("button", name="Write the structure").click()
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("You were not charged")
    expect(problem).to_contain_text("Request id")
    assert _ledger_balance(api, writer) == Decimal(500)
    calls = api.get("/api/my-calls", headers=writer.headers).json()["calls"]
    assert [c["success"] for c in calls] == [False]
    shoot(page, shots, "not-charged")


def test_a_rate_limited_step_says_when_to_retry(page: Page, writer: TestUser, api: httpx.Client,
                                                admin_headers: dict[str, str]) -> None:
    limited = api.put(f"/api/admin/users/{writer.username}/limits", headers=admin_headers,
                      json={"requests_per_minute": 1})
    assert limited.status_code == 200
    sign_in(page, writer.api_key)
    for attempt in range(2):
        page.goto("/app/projects/new")
        page.get_by_label("Title").fill(f"Hurry {attempt}")
        page.get_by_label("Logline").fill("Two in a minute is one too many")
        page.get_by_role("button", name="Write the structure").click()
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("Rate limit exceeded")
    expect(problem).to_contain_text(re.compile(r"retry in \d+ seconds"))
    assert len(api.get("/api/projects", headers=writer.headers).json()["projects"]) == 1
