"""The metered generation endpoints through the real processes (edge → gRPC services → PostgreSQL, Claude
simulated): happy paths, exact charges against the price table, errors that change nothing, 402s and the
whole story flow down to a Fountain export parsed by screenplain."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import httpx
import pytest
from screenplain.parsers import fountain
from screenplain.types import Dialog, Slug

from services.generation.pricing import PriceTable
from tests.helpers import TestUser, UserFactory

PRICES = PriceTable.load()
STORY = {"title": "The Last Heist", "logline": "A retired safecracker takes one last job.", "genre": "Thriller"}
THREE_ACT = ["setup", "confrontation", "resolution"]
CUSTOM_ACTS = [
    {"key": "opening", "name": "Opening", "description": "Where we meet Maya."},
    {"key": "turn", "name": "The Turn", "description": "The job goes wrong."},
    {"key": "closing", "name": "Closing", "description": "What it cost her."},
]
USAGE_KEYS = {"input_tokens", "output_tokens", "model", "credits_charged", "credits_remaining"}
MINIMUM_HOLD = {
    "/api/generate-structure": 10,
    "/api/generate-structure-custom": 10,
    "/api/generate-plot-points-for-act": 5,
    "/api/generate-scenes": 5,
    "/api/generate-scene": 3,
    "/api/generate-dialogue": 5,
    "/api/generate-characters": 3,
}


# --------------------------------------------------------------------------- helpers


def parse(response: httpx.Response) -> Any:
    """JSON with every non-integer number as an exact Decimal."""
    return json.loads(response.text, parse_float=Decimal)


def expected_credits(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """What the call must cost, worked out here with exact fractions (not with common.money, which is what
    is under test): USD per million tokens → cents, rounded up to 0.0001."""
    price = PRICES.models[model]
    cents = (Fraction(price.input_usd_per_mtok) * input_tokens + Fraction(price.output_usd_per_mtok) * output_tokens
             ) * 100 / 1_000_000
    return Decimal(math.ceil(cents * 10_000)) / 10_000


def price_of(usage: dict[str, Any]) -> Decimal:
    """The price of the tokens the simulator reported for this call."""
    return expected_credits(usage["model"], usage["input_tokens"], usage["output_tokens"])


def api_balance(client: httpx.Client, user: TestUser) -> Decimal:
    response = client.get("/api/my-stats", headers=user.headers)
    assert response.status_code == 200, response.text
    return Decimal(parse(response)["user"]["credits_remaining"])


@dataclass(frozen=True)
class Snapshot:
    """Everything a failed or refused call must leave alone."""

    available: Decimal
    held: Decimal
    usage_rows: int
    holds: int
    transactions: int
    projects: tuple[tuple[Any, ...], ...]


async def snapshot(db: asyncpg.Connection, user_id: int) -> Snapshot:
    account = await db.fetchrow("SELECT available, held FROM credit_accounts WHERE user_id = $1", user_id)
    projects = await db.fetch(
        """SELECT p.project_path, p.structure::text, p.updated_at,
                  (SELECT string_agg(pp.id || pp.kind || pp.act_key || pp.payload::text, '|' ORDER BY pp.id)
                   FROM project_parts pp WHERE pp.project_id = p.id) AS parts
           FROM projects p WHERE p.user_id = $1 ORDER BY p.project_path""", user_id)
    return Snapshot(
        available=account["available"] if account else Decimal(0),
        held=account["held"] if account else Decimal(0),
        usage_rows=await db.fetchval("SELECT count(*) FROM usage_logs WHERE user_id = $1", user_id),
        holds=await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user_id),
        transactions=await db.fetchval("SELECT count(*) FROM credit_transactions WHERE user_id = $1", user_id),
        projects=tuple(tuple(r) for r in projects),
    )


async def assert_charged(
    db: asyncpg.Connection, user: TestUser, response: httpx.Response, before: Decimal, endpoint: str,
    *, model: str | None = None,
) -> dict[str, Any]:
    """The call succeeded and was charged exactly the price table applied to the reported usage."""
    assert response.status_code == 200, response.text
    body = parse(response)
    usage = body["usage"]
    assert set(usage) == USAGE_KEYS
    assert usage["model"] == (model or PRICES.default)
    assert isinstance(usage["input_tokens"], int) and usage["input_tokens"] > 0
    assert isinstance(usage["output_tokens"], int) and usage["output_tokens"] > 0
    expected = price_of(usage)
    assert expected > 0
    assert usage["credits_charged"] == expected

    account = await db.fetchrow("SELECT available, held FROM credit_accounts WHERE user_id = $1", user.id)
    assert account["available"] == before - expected
    assert account["held"] == 0
    assert usage["credits_remaining"] == account["available"]
    assert Decimal(response.headers["X-Credits-Charged"]) == expected
    assert Decimal(response.headers["X-Credits-Remaining"]) == account["available"]
    assert response.headers["X-Request-ID"] == body["requestId"]

    row = await db.fetchrow("SELECT * FROM usage_logs WHERE request_id = $1", body["requestId"])
    assert row is not None
    assert row["user_id"] == user.id
    assert row["endpoint"] == endpoint
    assert row["method"] == "POST"
    assert (row["input_tokens"], row["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert row["tokens_used"] == usage["input_tokens"] + usage["output_tokens"]
    assert row["credits_cost"] == expected
    assert row["model_used"] == usage["model"]
    assert row["project_path"] == body["projectPath"]
    assert row["response_success"] is True
    assert row["error_message"] is None
    assert row["latency_ms"] is not None and row["latency_ms"] >= 0
    resolution = await db.fetchrow(
        """SELECT r.outcome, r.amount, h.amount AS held, h.endpoint FROM credit_hold_resolutions r
           JOIN credit_holds h ON h.id = r.hold_id WHERE r.hold_id = $1""", row["hold_id"])
    assert resolution["outcome"] == "posted" and resolution["amount"] == expected
    assert resolution["endpoint"] == endpoint and resolution["held"] >= MINIMUM_HOLD[endpoint]
    return dict(body)


def post(client: httpx.Client, user: TestUser, url: str, body: Any = None, **headers: str) -> httpx.Response:
    return client.post(url, headers={**user.headers, **headers}, json=body)


def make_project(client: httpx.Client, user: TestUser, *, scenes: int = 0, template: str = "three-act") -> str:
    response = post(client, user, "/api/generate-structure", {"storyInput": STORY, "template": template})
    assert response.status_code == 200, response.text
    path = str(response.json()["projectPath"])
    if scenes:
        response = post(client, user, "/api/generate-scenes", {"projectPath": path, "desiredSceneCount": scenes})
        assert response.status_code == 200, response.text
    return path


def get_project(client: httpx.Client, user: TestUser, path: str) -> dict[str, Any]:
    response = client.get(f"/api/projects/{path}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def generation_calls(path: str, act: str = "setup") -> dict[str, tuple[str, Any]]:
    """One valid call per metered endpoint against an existing project (url, body)."""
    return {
        "/api/generate-structure": ("/api/generate-structure", {"storyInput": STORY, "template": "three-act"}),
        "/api/generate-structure-custom": (
            "/api/generate-structure-custom",
            {"storyInput": STORY, "customTemplate": {"name": "Mine", "acts": CUSTOM_ACTS}},
        ),
        "/api/generate-plot-points-for-act": (f"/api/generate-plot-points-for-act/{path}/{act}",
                                              {"desiredSceneCount": 3}),
        "/api/generate-scenes": ("/api/generate-scenes", {"projectPath": path, "actKey": act}),
        "/api/generate-scene": (f"/api/generate-scene/{path}/{act}", None),
        "/api/generate-dialogue": ("/api/generate-dialogue",
                                   {"projectPath": path, "structureKey": act, "sceneIndex": 0}),
        "/api/generate-characters": ("/api/generate-characters", {"projectPath": path}),
    }


def project_calls(path: str) -> list[tuple[str, str, Any]]:
    """Every route that names a project: (method, url, json body)."""
    calls = generation_calls(path)
    return [
        ("GET", f"/api/projects/{path}", None),
        ("DELETE", f"/api/projects/{path}", None),
        ("GET", f"/api/projects/{path}/export?format=fountain", None),
        ("GET", f"/api/projects/{path}/export?format=text", None),
        ("GET", f"/api/projects/{path}/export?format=json", None),
        *[("POST", *calls[e]) for e in ("/api/generate-plot-points-for-act", "/api/generate-scenes",
                                         "/api/generate-scene", "/api/generate-dialogue",
                                         "/api/generate-characters")],
    ]


@pytest.fixture(scope="module")
def owner(users: UserFactory) -> TestUser:
    return users.create(credits=100, prefix="owner")


@pytest.fixture(scope="module")
def owned_project(client: httpx.Client, owner: TestUser) -> str:
    """A three-act project with two scenes per act and dialogue for setup:0, for error tests."""
    path = make_project(client, owner, scenes=2)
    response = post(client, owner, "/api/generate-dialogue", {"projectPath": path, "structureKey": "setup",
                                                               "sceneIndex": 0})
    assert response.status_code == 200, response.text
    return path


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("model", [None, "claude-haiku-4-5", "claude-3-5-sonnet-20241022"])
async def test_generate_structure(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                  model: str | None) -> None:
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    body: dict[str, Any] = {"storyInput": STORY, "template": "three-act"}
    if model:
        body["model"] = model
    response = post(client, user, "/api/generate-structure", body)
    result = await assert_charged(db, user, response, before.available, "/api/generate-structure", model=model)
    assert api_balance(client, user) == result["usage"]["credits_remaining"]

    template = client.get("/api/templates/three-act", headers=user.headers).json()
    assert [a["key"] for a in template["acts"]] == THREE_ACT
    assert result["template"] == "three-act"
    assert list(result["structure"]) == THREE_ACT
    for act in result["structure"].values():
        assert set(act) == {"name", "description"}
        assert act["name"].strip() and act["description"].strip()

    project = get_project(client, user, result["projectPath"])
    assert project["project_path"] == result["projectPath"]
    assert project["title"] == STORY["title"]
    assert project["story_input"] == STORY
    assert project["template"]["id"] == "three-act" and project["template"]["acts"] == template["acts"]
    assert project["structure"] == result["structure"]
    assert project["plot_points"] == project["scenes"] == project["dialogue"] == {}
    listed = client.get("/api/projects", headers=user.headers).json()["projects"]
    assert [p["projectPath"] for p in listed] == [result["projectPath"]]
    assert listed[0]["template"] == "three-act" and listed[0]["title"] == STORY["title"]


async def test_generate_structure_other_template(client: httpx.Client, users: UserFactory,
                                                 db: asyncpg.Connection) -> None:
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    response = post(client, user, "/api/generate-structure", {"storyInput": STORY, "template": "hero-journey"})
    result = await assert_charged(db, user, response, before.available, "/api/generate-structure")
    keys = [a["key"] for a in client.get("/api/templates/hero-journey", headers=user.headers).json()["acts"]]
    assert len(keys) == 12 and list(result["structure"]) == keys
    assert get_project(client, user, result["projectPath"])["structure"] == result["structure"]


async def test_generate_structure_custom(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    response = post(client, user, "/api/generate-structure-custom",
                    {"storyInput": STORY, "customTemplate": {"name": "Mine", "acts": CUSTOM_ACTS}})
    result = await assert_charged(db, user, response, before.available, "/api/generate-structure-custom")
    assert result["template"] == "custom"
    assert list(result["structure"]) == [a["key"] for a in CUSTOM_ACTS]
    assert all(set(a) == {"name", "description"} for a in result["structure"].values())
    project = get_project(client, user, result["projectPath"])
    assert project["template"]["name"] == "Mine"
    assert project["template"]["acts"] == CUSTOM_ACTS
    assert project["structure"] == result["structure"]


@pytest.mark.parametrize("model", [None, "claude-haiku-4-5"])
async def test_generate_plot_points(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                    model: str | None) -> None:
    user = users.create(credits=100)
    path = make_project(client, user)
    before = await snapshot(db, user.id)
    body: dict[str, Any] = {"desiredSceneCount": 4}
    if model:
        body["model"] = model
    response = post(client, user, f"/api/generate-plot-points-for-act/{path}/confrontation", body)
    result = await assert_charged(db, user, response, before.available, "/api/generate-plot-points-for-act",
                                  model=model)
    assert result["projectPath"] == path and result["actKey"] == "confrontation"
    points = result["plotPoints"]
    assert isinstance(points, list) and len(points) == 4
    assert all(isinstance(p, str) and p.strip() for p in points)
    assert get_project(client, user, path)["plot_points"] == {"confrontation": points}


async def test_generate_plot_points_without_body(client: httpx.Client, users: UserFactory,
                                                 db: asyncpg.Connection) -> None:
    user = users.create(credits=100)
    path = make_project(client, user)
    before = await snapshot(db, user.id)
    response = client.post(f"/api/generate-plot-points-for-act/{path}/setup", headers=user.headers)
    result = await assert_charged(db, user, response, before.available, "/api/generate-plot-points-for-act")
    assert 1 <= len(result["plotPoints"]) <= 20
    assert get_project(client, user, path)["plot_points"]["setup"] == result["plotPoints"]


def assert_scene(scene: dict[str, Any]) -> None:
    assert set(scene) == {"slugline", "title", "description", "characters"}
    assert scene["slugline"].strip() and scene["title"].strip() and scene["description"].strip()
    assert scene["characters"] and all(isinstance(c, str) and c for c in scene["characters"])


@pytest.mark.parametrize("act_key", [None, "resolution"])
async def test_generate_scenes(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                               act_key: str | None) -> None:
    user = users.create(credits=100)
    path = make_project(client, user)
    before = await snapshot(db, user.id)
    body: dict[str, Any] = {"projectPath": path, "desiredSceneCount": 3}
    if act_key:
        body["actKey"] = act_key
    response = post(client, user, "/api/generate-scenes", body)
    result = await assert_charged(db, user, response, before.available, "/api/generate-scenes")
    assert result["projectPath"] == path
    expected_keys = [act_key] if act_key else THREE_ACT
    assert list(result["scenes"]) == expected_keys
    for scenes in result["scenes"].values():
        assert len(scenes) == 3
        for scene in scenes:
            assert_scene(scene)
    assert get_project(client, user, path)["scenes"] == result["scenes"]


@pytest.mark.parametrize("model", [None, "claude-3-5-sonnet-20241022"])
async def test_generate_scene(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                              model: str | None) -> None:
    user = users.create(credits=100)
    path = make_project(client, user, scenes=2)
    existing = get_project(client, user, path)["scenes"]
    before = await snapshot(db, user.id)
    response = post(client, user, f"/api/generate-scene/{path}/setup", {"model": model} if model else None)
    result = await assert_charged(db, user, response, before.available, "/api/generate-scene", model=model)
    assert result["projectPath"] == path and result["actKey"] == "setup" and result["sceneIndex"] == 2
    assert_scene(result["scene"])
    saved = get_project(client, user, path)["scenes"]
    assert saved["setup"] == [*existing["setup"], result["scene"]]
    assert {k: v for k, v in saved.items() if k != "setup"} == {k: v for k, v in existing.items() if k != "setup"}


@pytest.mark.parametrize("model", [None, "claude-haiku-4-5"])
async def test_generate_dialogue(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                 model: str | None) -> None:
    user = users.create(credits=100)
    path = make_project(client, user, scenes=2)
    before = await snapshot(db, user.id)
    body: dict[str, Any] = {"projectPath": path, "structureKey": "confrontation", "sceneIndex": 1}
    if model:
        body["model"] = model
    response = post(client, user, "/api/generate-dialogue", body)
    result = await assert_charged(db, user, response, before.available, "/api/generate-dialogue", model=model)
    assert result["projectPath"] == path and result["actKey"] == "confrontation" and result["sceneIndex"] == 1
    assert isinstance(result["dialogue"], str) and len(result["dialogue"].strip()) >= 10
    assert get_project(client, user, path)["dialogue"] == {"confrontation:1": result["dialogue"]}


async def test_generate_characters(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    """Character profiles: name, role, want, need, arc and voice for each, saved in the project."""
    user = users.create(credits=100)
    path = make_project(client, user, scenes=1)
    before = await snapshot(db, user.id)
    response = post(client, user, "/api/generate-characters", {"projectPath": path})
    result = await assert_charged(db, user, response, before.available, "/api/generate-characters")
    assert result["projectPath"] == path and 1 <= len(result["characters"]) <= 12
    for character in result["characters"]:
        assert set(character) == {"name", "role", "want", "need", "arc", "voice"}
        assert all(isinstance(v, str) and v.strip() for v in character.values())
    assert get_project(client, user, path)["characters"] == result["characters"]
    again = post(client, user, "/api/generate-characters", {"projectPath": path})
    assert again.status_code == 200, again.text
    assert get_project(client, user, path)["characters"] == again.json()["characters"], "the newest cast wins"


async def test_charges_accumulate_over_calls(client: httpx.Client, users: UserFactory,
                                             db: asyncpg.Connection) -> None:
    """Several calls in a row: the balance is the grant minus the sum of each call's exact price."""
    user = users.create(credits=50)
    path = make_project(client, user, scenes=1)
    for model in ("claude-haiku-4-5", "claude-opus-4-6", "claude-sonnet-4-6"):
        response = post(client, user, f"/api/generate-scene/{path}/resolution", {"model": model})
        assert response.status_code == 200, response.text
    rows = await db.fetch("SELECT * FROM usage_logs WHERE user_id = $1 ORDER BY id", user.id)
    assert len(rows) == 5 and all(r["response_success"] for r in rows)
    for row in rows:
        assert row["credits_cost"] == expected_credits(row["model_used"], row["input_tokens"], row["output_tokens"])
    assert [r["model_used"] for r in rows[2:]] == ["claude-haiku-4-5", "claude-opus-4-6", "claude-sonnet-4-6"]
    total = sum((r["credits_cost"] for r in rows), Decimal(0))
    assert api_balance(client, user) == Decimal(50) - total
    stats = parse(client.get("/api/my-stats", headers=user.headers))
    assert stats["usage"]["total_requests"] == 5 and stats["usage"]["successful_requests"] == 5
    assert Decimal(stats["usage"]["total_cost"]) == total
    assert stats["usage"]["total_tokens"] == sum(r["tokens_used"] for r in rows)


# --------------------------------------------------------------------------- read-only routes


def test_templates_and_models(client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=0)
    listed = client.get("/api/templates", headers=user.headers)
    assert listed.status_code == 200
    ids = [t["id"] for t in listed.json()["templates"]]
    assert "three-act" in ids and "save-the-cat" in ids and "hero-journey" in ids
    one = client.get("/api/templates/save-the-cat", headers=user.headers)
    assert one.status_code == 200 and one.json()["id"] == "save-the-cat" and len(one.json()["acts"]) == 15

    models = client.get("/api/models", headers=user.headers)
    assert models.status_code == 200
    by_id = {m["id"]: m for m in models.json()["models"]}
    assert set(by_id) == set(PRICES.models)
    for model_id, price in PRICES.models.items():
        assert Decimal(by_id[model_id]["input_usd_per_mtok"]) == price.input_usd_per_mtok
        assert Decimal(by_id[model_id]["output_usd_per_mtok"]) == price.output_usd_per_mtok
    assert [m for m, v in by_id.items() if v["default"]] == [PRICES.default]


@pytest.mark.parametrize(("template_id", "status"), [
    ("snowflake-method", 404), ("Hero%20Journey", 400), ("..x", 400), ("Three-Act", 400), ("a_b", 400),
])
def test_get_template_errors(client: httpx.Client, users: UserFactory, template_id: str, status: int) -> None:
    user = users.create(credits=0)
    response = client.get(f"/api/templates/{template_id}", headers=user.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]


# --------------------------------------------------------------------------- errors change nothing


NO_KEY: dict[str, str] = {}
BAD_KEY = {"X-API-Key": "user_" + "0" * 64}


def all_routes(path: str) -> list[tuple[str, str, Any]]:
    calls = generation_calls(path)
    return [
        ("GET", "/api/templates", None), ("GET", "/api/templates/three-act", None), ("GET", "/api/models", None),
        ("GET", "/api/projects", None), *project_calls(path),
        ("POST", *calls["/api/generate-structure"]), ("POST", *calls["/api/generate-structure-custom"]),
    ]


@pytest.mark.parametrize("headers", [NO_KEY, BAD_KEY, {"X-API-Key": ""}], ids=["no-key", "bad-key", "empty-key"])
async def test_unauthenticated_requests_are_401(client: httpx.Client, db: asyncpg.Connection, owner: TestUser,
                                                owned_project: str, headers: dict[str, str]) -> None:
    before = await snapshot(db, owner.id)
    for method, url, body in all_routes(owned_project):
        response = client.request(method, url, headers=headers, json=body)
        assert response.status_code == 401, (method, url, response.text)
        expected = "API key required" if not headers.get("X-API-Key") else "Invalid API key"
        assert response.json()["error"] == expected, (method, url)
    assert await snapshot(db, owner.id) == before


async def test_another_users_project_is_not_found(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                                  owner: TestUser, owned_project: str) -> None:
    intruder = users.create(credits=100, prefix="intruder")
    owner_before = await snapshot(db, owner.id)
    intruder_before = await snapshot(db, intruder.id)
    for method, url, body in project_calls(owned_project):
        response = client.request(method, url, headers=intruder.headers, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"] == "Project not found", (method, url)
    assert await snapshot(db, intruder.id) == intruder_before
    assert intruder_before.usage_rows == intruder_before.holds == 0
    assert await snapshot(db, owner.id) == owner_before
    assert owned_project not in [p["projectPath"] for p in
                                 client.get("/api/projects", headers=intruder.headers).json()["projects"]]
    assert get_project(client, owner, owned_project)["project_path"] == owned_project


@pytest.mark.parametrize("missing", ["no-such-project-1234abcd", "Not_A_Valid_Path", "a" * 101])
async def test_unknown_project_is_not_found(client: httpx.Client, users: UserFactory, db: asyncpg.Connection,
                                            missing: str) -> None:
    user = users.create(credits=100)
    before = await snapshot(db, user.id)
    for method, url, body in project_calls(missing):
        response = client.request(method, url, headers=user.headers, json=body)
        if len(missing) > 100 and isinstance(body, dict) and "projectPath" in body:
            assert response.status_code == 422, (method, url, response.text)  # schema: at most 100 chars
            continue
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"] == "Project not found"
    assert await snapshot(db, user.id) == before
    assert before.usage_rows == before.holds == before.transactions - 1 == 0


def bad_requests(path: str) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(label, url, request kwargs, status, error text or "") for invalid calls on an existing project."""
    story = {"storyInput": STORY}
    custom = "/api/generate-structure-custom"

    def acts(*items: dict[str, Any]) -> dict[str, Any]:
        return {"json": {**story, "customTemplate": {"name": "X", "acts": list(items)}}}

    return [
        # unknown act / scene / template
        ("plot points unknown act", f"/api/generate-plot-points-for-act/{path}/nope", {}, 404, "not found"),
        ("scenes unknown act", "/api/generate-scenes", {"json": {"projectPath": path, "actKey": "nope"}}, 404,
         "not found"),
        ("scene unknown act", f"/api/generate-scene/{path}/nope", {}, 404, "not found"),
        ("dialogue unknown act", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "nope", "sceneIndex": 0}}, 404, "not found"),
        ("dialogue unknown scene", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": 2}}, 404, "not found"),
        ("dialogue scene index far out", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": 9999}}, 404, "not found"),
        ("unknown template", "/api/generate-structure", {"json": {**story, "template": "snowflake-method"}}, 404,
         "not found"),
        # malformed template ids
        ("template with space", "/api/generate-structure", {"json": {**story, "template": "Hero Journey"}}, 400,
         "template"),
        ("template traversal", "/api/generate-structure", {"json": {**story, "template": "../x"}}, 400, "template"),
        ("template uppercase", "/api/generate-structure", {"json": {**story, "template": "Three-Act"}}, 400,
         "template"),
        ("template newline", "/api/generate-structure", {"json": {**story, "template": "three-act\n"}}, 400,
         "template"),
        # models and caps
        ("unknown model", "/api/generate-structure", {"json": {**story, "template": "three-act", "model": "gpt-4"}},
         400, "Unknown model"),
        ("unknown model on scene", f"/api/generate-scene/{path}/setup", {"json": {"model": "claude-2"}}, 400,
         "Unknown model"),
        ("unknown model on dialogue", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": 0, "model": "Claude-Haiku-4-5"}},
         400, "Unknown model"),
        ("maxTokens over the cap", "/api/generate-structure",
         {"json": {**story, "template": "three-act", "maxTokens": 8193}}, 400, "max_tokens"),
        ("maxTokens over the cap on scene", f"/api/generate-scene/{path}/setup", {"json": {"maxTokens": 100_000}},
         400, "max_tokens"),
        ("maxTokens over the schema limit", "/api/generate-structure",
         {"json": {**story, "template": "three-act", "maxTokens": 200_000}}, 422, "maxTokens"),
        ("maxTokens zero", f"/api/generate-scene/{path}/setup", {"json": {"maxTokens": 0}}, 422, "maxTokens"),
        ("maxTokens string", f"/api/generate-scene/{path}/setup", {"json": {"maxTokens": "100"}}, 422, "maxTokens"),
        # bad bodies
        ("missing storyInput", "/api/generate-structure", {"json": {"template": "three-act"}}, 422, "storyInput"),
        ("missing template", "/api/generate-structure", {"json": story}, 422, "template"),
        ("storyInput string", "/api/generate-structure", {"json": {"storyInput": "x", "template": "three-act"}}, 422,
         "storyInput"),
        ("storyInput list", "/api/generate-structure", {"json": {"storyInput": ["x"], "template": "three-act"}},
         422, "storyInput"),
        ("storyInput empty", "/api/generate-structure", {"json": {"storyInput": {}, "template": "three-act"}}, 400,
         "storyInput"),
        ("storyInput no text", "/api/generate-structure",
         {"json": {"storyInput": {"title": "  ", "n": 3}, "template": "three-act"}}, 400, "storyInput"),
        ("template number", "/api/generate-structure", {"json": {**story, "template": 3}}, 422, "template"),
        ("unknown field", "/api/generate-structure", {"json": {**story, "template": "three-act", "x": 1}}, 422,
         "x"),
        ("body is a list", "/api/generate-structure", {"json": [story]}, 422, ""),
        ("sceneIndex negative", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": -1}}, 422, "sceneIndex"),
        ("sceneIndex string", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": "0"}}, 422, "sceneIndex"),
        ("sceneIndex float", "/api/generate-dialogue",
         {"json": {"projectPath": path, "structureKey": "setup", "sceneIndex": 0.5}}, 422, "sceneIndex"),
        ("sceneIndex missing", "/api/generate-dialogue", {"json": {"projectPath": path, "structureKey": "setup"}},
         422, "sceneIndex"),
        ("projectPath number", "/api/generate-scenes", {"json": {"projectPath": 7}}, 422, "projectPath"),
        ("projectPath missing", "/api/generate-scenes", {"json": {}}, 422, "projectPath"),
        ("desiredSceneCount zero", "/api/generate-scenes", {"json": {"projectPath": path, "desiredSceneCount": 0}},
         422, "desiredSceneCount"),
        ("desiredSceneCount too many", f"/api/generate-plot-points-for-act/{path}/setup",
         {"json": {"desiredSceneCount": 13}}, 422, "desiredSceneCount"),
        ("desiredSceneCount bool", f"/api/generate-plot-points-for-act/{path}/setup",
         {"json": {"desiredSceneCount": True}}, 422, "desiredSceneCount"),
        ("scene extra field", f"/api/generate-scene/{path}/setup", {"json": {"bogus": 1}}, 422, "bogus"),
        # malformed JSON
        ("malformed JSON structure", "/api/generate-structure",
         {"content": b'{"storyInput": {', "headers": {"Content-Type": "application/json"}}, 400, "Invalid JSON"),
        ("malformed JSON dialogue", "/api/generate-dialogue",
         {"content": b"{'projectPath': 1}", "headers": {"Content-Type": "application/json"}}, 400, "Invalid JSON"),
        ("malformed JSON plot points", f"/api/generate-plot-points-for-act/{path}/setup",
         {"content": b'{"desiredSceneCount": 3', "headers": {"Content-Type": "application/json"}}, 400,
         "Invalid JSON"),
        # custom templates
        ("custom zero acts", custom, acts(), 400, "acts"),
        ("custom duplicate keys", custom, acts({"key": "a", "name": "A"}, {"key": "a", "name": "B"}), 400,
         "duplicate"),
        ("custom bad key", custom, acts({"key": "Act One", "name": "A"}), 400, "key"),
        ("custom blank name", custom, acts({"key": "a", "name": "  "}), 400, ""),
        ("custom too many acts", custom, acts(*({"key": f"a{i}", "name": f"A{i}"} for i in range(25))), 400,
         "acts"),
        ("custom acts not a list", custom, {"json": {**story, "customTemplate": {"name": "X", "acts": {}}}}, 422,
         "acts"),
        ("custom missing", custom, {"json": story}, 422, "customTemplate"),
        ("custom act key number", custom, acts({"key": 1, "name": "A"}), 422, "key"),
    ]


BAD_LABELS = [case[0] for case in bad_requests("p")]


@pytest.mark.parametrize("label", BAD_LABELS)
async def test_invalid_requests_change_nothing(client: httpx.Client, db: asyncpg.Connection, owner: TestUser,
                                               owned_project: str, label: str) -> None:
    _, url, kwargs, status, text = next(c for c in bad_requests(owned_project) if c[0] == label)
    before = await snapshot(db, owner.id)
    headers = {**owner.headers, **kwargs.pop("headers", {})}
    response = client.post(url, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert text.lower() in json.dumps(body).lower()
    assert "usage" not in body
    assert "X-Credits-Charged" not in response.headers
    # Nothing held, charged, logged or saved: refused before Reserve.
    assert await snapshot(db, owner.id) == before


async def test_unknown_model_is_refused_before_any_hold(client: httpx.Client, users: UserFactory,
                                                        db: asyncpg.Connection) -> None:
    user = users.create(credits=100)
    for url, body in generation_calls("does-not-matter").values():
        if "projectPath" in (body or {}) or "does-not-matter" in url:
            continue
        response = post(client, user, url, {**body, "model": "claude-opus-99"})
        assert response.status_code == 400 and response.json()["error"].startswith("Unknown model"), response.text
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE user_id = $1", user.id) == 0
    assert await db.fetchval("SELECT count(*) FROM usage_logs WHERE user_id = $1", user.id) == 0
    assert await db.fetchval("SELECT count(*) FROM credit_transactions WHERE user_id = $1", user.id) == 1
    assert api_balance(client, user) == 100


# --------------------------------------------------------------------------- 402


@pytest.mark.parametrize("endpoint", ["/api/generate-structure", "/api/generate-structure-custom"])
async def test_insufficient_credits_below_the_minimum_hold(client: httpx.Client, users: UserFactory,
                                                           db: asyncpg.Connection, endpoint: str) -> None:
    user = users.create(credits=4)
    before = await snapshot(db, user.id)
    url, body = generation_calls("unused")[endpoint]
    response = post(client, user, url, body)
    assert response.status_code == 402, response.text
    doc = parse(response)
    assert doc == {"error": "Insufficient credits", "remaining": 4, "required": doc["required"],
                   "message": "Please purchase more credits to continue"}
    assert doc["required"] >= 10
    assert '"remaining":4' in response.text
    assert "X-Credits-Charged" not in response.headers
    after = await snapshot(db, user.id)
    assert after == before and after.usage_rows == after.holds == 0
    assert api_balance(client, user) == 4
    assert client.get("/api/projects", headers=user.headers).json()["projects"] == []


async def test_insufficient_credits_for_the_worst_case(client: httpx.Client, users: UserFactory,
                                                       db: asyncpg.Connection) -> None:
    """The hold is max(minimum, worst case): an expensive model with a large maxTokens needs more than the
    balance on every project endpoint, even though the minimums (3-10) fit."""
    user = users.create(credits=12)
    path = make_project(client, user, scenes=1)
    before = await snapshot(db, user.id)
    assert before.available > 10
    expensive = {"model": "claude-fable-5-1", "maxTokens": 8192}
    for endpoint, (url, body) in generation_calls(path).items():
        response = post(client, user, url, {**(body or {}), **expensive})
        assert response.status_code == 402, (endpoint, response.text)
        doc = parse(response)
        assert doc["error"] == "Insufficient credits"
        assert doc["message"] == "Please purchase more credits to continue"
        assert doc["remaining"] == before.available
        # The worst case of 8192 output tokens at $50/Mtok alone is 40.96 credits.
        assert doc["required"] > Decimal("40.96") > doc["remaining"]
    assert await snapshot(db, user.id) == before


# --------------------------------------------------------------------------- the whole story


async def test_story_flow_end_to_end(client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    user = users.create(credits=200)
    spent = Decimal(0)
    story = {**STORY, "author": "Ada Writer"}

    response = post(client, user, "/api/generate-structure", {"storyInput": story, "template": "three-act"})
    assert response.status_code == 200, response.text
    path = response.json()["projectPath"]
    spent += price_of(parse(response)["usage"])

    for act in THREE_ACT:
        response = post(client, user, f"/api/generate-plot-points-for-act/{path}/{act}", {"desiredSceneCount": 2})
        assert response.status_code == 200, response.text
        assert len(response.json()["plotPoints"]) == 2
        spent += price_of(parse(response)["usage"])

    response = post(client, user, "/api/generate-scenes", {"projectPath": path, "desiredSceneCount": 2})
    assert response.status_code == 200, response.text
    spent += price_of(parse(response)["usage"])

    response = post(client, user, f"/api/generate-scene/{path}/confrontation")
    assert response.status_code == 200, response.text
    assert response.json()["sceneIndex"] == 2
    spent += price_of(parse(response)["usage"])

    for act, index in (("setup", 0), ("confrontation", 2)):
        response = post(client, user, "/api/generate-dialogue",
                        {"projectPath": path, "structureKey": act, "sceneIndex": index})
        assert response.status_code == 200, response.text
        spent += price_of(parse(response)["usage"])

    project = get_project(client, user, path)
    assert [len(project["scenes"][a]) for a in THREE_ACT] == [2, 3, 2]
    assert set(project["dialogue"]) == {"setup:0", "confrontation:2"}
    assert set(project["plot_points"]) == set(THREE_ACT)
    sluglines = [s["slugline"] for act in THREE_ACT for s in project["scenes"][act]]

    assert api_balance(client, user) == Decimal(200) - spent
    rows = await db.fetch("SELECT endpoint, credits_cost, response_success, project_path FROM usage_logs "
                          "WHERE user_id = $1 ORDER BY id", user.id)
    assert [r["endpoint"] for r in rows] == [
        "/api/generate-structure", *["/api/generate-plot-points-for-act"] * 3, "/api/generate-scenes",
        "/api/generate-scene", "/api/generate-dialogue", "/api/generate-dialogue",
    ]
    assert all(r["response_success"] and r["project_path"] == path for r in rows)
    assert sum((r["credits_cost"] for r in rows), Decimal(0)) == spent

    # Fountain, checked by a real Fountain parser.
    exported = client.get(f"/api/projects/{path}/export", params={"format": "fountain"}, headers=user.headers)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/plain")
    assert f'filename="{path}.fountain"' in exported.headers["content-disposition"]
    screenplay = fountain.parse(io.StringIO(exported.text))
    assert screenplay.title_page["Title"] == [STORY["title"]]
    assert screenplay.title_page["Author"] == ["Ada Writer"]
    paragraphs = list(screenplay)
    assert [str(p.line) for p in paragraphs if isinstance(p, Slug)] == [s.upper() for s in sluglines]
    speakers = {str(p.character) for p in paragraphs if isinstance(p, Dialog)}
    assert speakers, "the generated dialogue should export as Fountain dialogue"

    text = client.get(f"/api/projects/{path}/export", params={"format": "text"}, headers=user.headers)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert f'filename="{path}.txt"' in text.headers["content-disposition"]
    position = 0
    for slugline in sluglines:  # every scene heading, in order
        position = text.text.find(slugline.upper(), position)
        assert position >= 0, slugline
        position += 1

    doc = client.get(f"/api/projects/{path}/export", params={"format": "json"}, headers=user.headers)
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("application/json")
    exported_json = doc.json()
    assert exported_json["project_path"] == path and exported_json["title"] == STORY["title"]
    assert [a["key"] for a in exported_json["acts"]] == THREE_ACT
    assert [s["slugline"] for a in exported_json["acts"] for s in a["scenes"]] == sluglines
    assert [a["plot_points"] for a in exported_json["acts"]] == [project["plot_points"][a] for a in THREE_ACT]
    dialogues = {(a["key"], s["index"]): s["dialogue_text"] for a in exported_json["acts"] for s in a["scenes"]}
    assert dialogues[("setup", 0)] == project["dialogue"]["setup:0"]
    assert dialogues[("confrontation", 2)] == project["dialogue"]["confrontation:2"]

    # A second project, then list, delete and 404.
    second = make_project(client, user, template="kishotenketsu")
    listed = client.get("/api/projects", headers=user.headers).json()["projects"]
    assert {p["projectPath"] for p in listed} == {path, second}
    balance = api_balance(client, user)
    deleted = client.delete(f"/api/projects/{path}", headers=user.headers)
    assert deleted.status_code == 200 and deleted.json() == {"message": "Project deleted", "projectPath": path}
    for method, url, body in project_calls(path):
        response = client.request(method, url, headers=user.headers, json=body)
        assert response.status_code == 404, (method, url, response.text)
    assert [p["projectPath"] for p in client.get("/api/projects", headers=user.headers).json()["projects"]] == [
        second]
    assert api_balance(client, user) == balance
