"""Hostile input through the real edge: oversized and malformed bodies, non-numbers and absurd numbers for
credits, SQL metacharacters and unicode in usernames, path traversal in template ids and project paths.
Each is refused with a 4xx JSON error, and `db_snapshot` shows that nothing was created, held or changed.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import asyncpg
import httpx
import pytest

from services.generation.templates import InvalidTemplateId, TemplateError, TemplateStore, is_valid_template_id
from tests.helpers import UserFactory, db_snapshot
from tests.stack import Stack

STORY = {"title": "The Last Heist", "logline": "A retired safecracker takes one last job."}


def raw_request(base_url: str, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, Any] | None, str]:
    """Send `path` exactly as written (httpx would normalise `..` and re-encode), return (status, json, text)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return response.status, parsed, text
    finally:
        conn.close()


def assert_refused(status: int, body: Any, allowed: tuple[int, ...], text: str = "") -> None:
    assert status in allowed, f"{status}: {text or body}"
    assert isinstance(body, dict) and isinstance(body.get("error"), str), f"not our JSON error shape: {text}"


# -- body size -------------------------------------------------------------------------------------------

SMALL_LIMIT = 2048


@pytest.fixture(scope="module")
def small_edge(stack: Stack) -> Iterator[str]:
    """A second edge on the same services with EDGE_MAX_BODY_BYTES=2048: proves the setting is honoured and
    lets a chunked body cross the limit without megabytes of traffic."""
    with stack.replica("edge-small-body", "edge", {"EDGE_MAX_BODY_BYTES": str(SMALL_LIMIT)}) as url:
        yield url


def _grant_body(username: str, size: int) -> bytes:
    """A valid grant of 1 credit, padded with spaces to exactly `size` bytes."""
    body = json.dumps({"username": username, "credits": 1}).encode()
    return body + b" " * (size - len(body))


async def test_declared_length_over_the_default_limit_is_413_before_the_body_is_sent(
    stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=1)
    before = await db_snapshot(db, user.id)
    # Only the headers are sent: the edge must answer from Content-Length alone (1 MiB + 1), not wait.
    for headers in ({"X-API-Key": stack.admin_key}, {}):
        status, body, text = raw_request(stack.edge_url, "POST", "/api/admin/grant-credits", headers={
            **headers, "Content-Type": "application/json", "Content-Length": str(1024 * 1024 + 1)})
        assert status == 413, text
        assert body is not None and body["error"] == "Request body too large"
        assert str(1024 * 1024) in body["message"]
    assert await db_snapshot(db, user.id) == before


async def test_bodies_up_to_the_limit_pass_and_one_byte_more_is_413(
    small_edge: str, stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=1)
    admin = {"X-API-Key": stack.admin_key, "Content-Type": "application/json"}
    with httpx.Client(base_url=small_edge, timeout=30) as http:
        at_limit = http.post("/api/admin/grant-credits", headers=admin, content=_grant_body(user.username,
                                                                                             SMALL_LIMIT))
        assert at_limit.status_code == 200, at_limit.text
        before = await db_snapshot(db, user.id)
        over = http.post("/api/admin/grant-credits", headers=admin,
                         content=_grant_body(user.username, SMALL_LIMIT + 1))
        assert over.status_code == 413, over.text
        assert over.json()["error"] == "Request body too large"
    assert await db_snapshot(db, user.id) == before


async def test_chunked_body_is_counted_and_stopped_at_the_limit(
    small_edge: str, stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    user = users.create(credits=1)
    before = await db_snapshot(db, user.id)
    body = _grant_body(user.username, SMALL_LIMIT * 3)

    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, with no Content-Length
        for start in range(0, len(body), 512):
            yield body[start:start + 512]

    with httpx.Client(base_url=small_edge, timeout=30) as http:
        response = http.post("/api/admin/grant-credits", content=chunks(),
                             headers={"X-API-Key": stack.admin_key, "Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "Request body too large"
    assert await db_snapshot(db, user.id) == before


# -- credit amounts --------------------------------------------------------------------------------------

#: Raw JSON for a credit amount, none of which may grant anything.
BAD_CREDITS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "-1", "10.5", "0.1", "10.0000000000000001",
               "1e-4", '"10"', "true", "null", "[]", "{}", "100000001", "1e12", "99999999999999999999999999999",
               "1" * 5000]


@pytest.mark.parametrize("amount", [*BAD_CREDITS, "0", "-0"], ids=lambda a: a[:24])
async def test_grant_refuses_bad_amounts_and_changes_nothing(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory, db: asyncpg.Connection, amount: str
) -> None:
    user = users.create(credits=5)
    before = await db_snapshot(db, user.id)
    response = client.post("/api/admin/grant-credits", headers={**admin_headers, "Content-Type": "application/json"},
                           content=f'{{"username": "{user.username}", "credits": {amount}}}')
    assert_refused(response.status_code, response.json(), (400, 422), response.text)
    assert await db_snapshot(db, user.id) == before


@pytest.mark.parametrize("amount", BAD_CREDITS, ids=lambda a: a[:24])
async def test_create_user_refuses_bad_initial_credits_and_creates_nothing(
    client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection, amount: str
) -> None:
    name = f"c_{time.monotonic_ns()}"
    before = await db_snapshot(db)
    response = client.post("/api/admin/create-user", headers={**admin_headers, "Content-Type": "application/json"},
                           content=f'{{"username": "{name}", "email": "{name}@example.test", '
                                   f'"initialCredits": {amount}}}')
    assert_refused(response.status_code, response.json(), (400, 422), response.text)
    assert await db_snapshot(db) == before
    assert await db.fetchval("SELECT count(*) FROM user_accounts WHERE username = $1", name) == 0


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "1e309"])
def test_non_finite_numbers_are_invalid_json_with_a_reason(
    client: httpx.Client, admin_headers: dict[str, str], amount: str
) -> None:
    response = client.post("/api/admin/grant-credits", headers={**admin_headers, "Content-Type": "application/json"},
                           content=f'{{"username": "nobody", "credits": {amount}}}')
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Invalid JSON"
    assert "NaN" in response.json()["message"] or "not valid JSON" in response.json()["message"]


# -- usernames -------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "'; DROP TABLE user_accounts;--",
    "admin' OR '1'='1",
    'robert"); DELETE FROM credit_accounts; --',
    "ab%",
    "ab_%' --",
    "jürgen",
    "ü" * 10,
    "abc\u202egnp.exe",  # right-to-left override
    "\u200fabcdef",  # right-to-left mark
    "abc\u0000def",
    "abc\ndef",
    "a" * 65,
    "a" * 10_000,
    "ab",
    "../../etc/passwd",
    "admin/..",
    "\U0001f600\U0001f600\U0001f600",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:30])
async def test_create_user_refuses_hostile_usernames_and_creates_nothing(
    client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection, name: str
) -> None:
    before = await db_snapshot(db)
    response = client.post("/api/admin/create-user", headers=admin_headers,
                           json={"username": name, "email": "hostile@example.test", "initialCredits": 5})
    # 422 for a name the pattern refuses; 400 when the JSON itself is refused (a NUL cannot be stored).
    assert_refused(response.status_code, response.json(), (400, 422), response.text)
    assert await db_snapshot(db) == before
    assert await db.fetchval("SELECT count(*) FROM user_accounts WHERE email = 'hostile@example.test'") == 0


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:30])
async def test_username_paths_refuse_hostile_names(
    stack: Stack, users: UserFactory, db: asyncpg.Connection, name: str
) -> None:
    bystander = users.create(credits=3)
    admin_id = await db.fetchval("SELECT id FROM user_accounts WHERE username = 'admin'")
    before = await db_snapshot(db, bystander.id, admin_id)
    segment = quote(name, safe="")
    for method, path in (("GET", f"/api/admin/usage-stats/{segment}"),
                         ("POST", f"/api/admin/users/{segment}/rotate-key"),
                         ("POST", f"/api/admin/users/{segment}/disable"),
                         ("POST", f"/api/admin/users/{segment}/enable")):
        status, body, text = raw_request(stack.edge_url, method, path, headers={"X-API-Key": stack.admin_key})
        assert_refused(status, body, (404, 422), text)
    assert await db_snapshot(db, bystander.id, admin_id) == before


# -- id cursors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "param"), [("/api/my-transactions", "before"), ("/api/admin/users", "after")])
def test_id_cursors_up_to_int64_work_and_beyond_are_422(
    client: httpx.Client, admin_headers: dict[str, str], users: UserFactory, path: str, param: str
) -> None:
    """Found by the fuzzer: a cursor near 2**63 was a billing 502 (the query typed it int4)."""
    user = users.create(credits=1)
    headers = admin_headers if "admin" in path else user.headers
    for value, status in ((2**63 - 2, 200), (2**63 - 1, 200), (2**63, 422), (10**30, 422), (-1, 422)):
        response = client.get(path, params={param: value}, headers=headers)
        assert response.status_code == status, f"{param}={value}: {response.text}"


# -- template ids ----------------------------------------------------------------------------------------

#: Raw URL path segments (sent as written), each aiming outside the templates or at a file directly.
TRAVERSAL_SEGMENTS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "../../etc/passwd",
    "..",
    "...",
    "%2E%2E",
    "%252e%252e%252fetc%252fpasswd",
    "%2Fetc%2Fpasswd",
    "..%5C..%5Cwindows%5Cwin.ini",
    "save-the-cat.json",
    "save-the-cat%00",
    "save-the-cat%00.json",
    "save-the-cat%0A",
    "SAVE-THE-CAT",
    "%C3%BCber",
    "%E2%80%AEtac-eht-evas",
    "templates%2Fsave-the-cat",
    "-save-the-cat",
    "a" * 300,
]


@pytest.mark.parametrize("segment", TRAVERSAL_SEGMENTS)
def test_template_ids_cannot_traverse(stack: Stack, users: UserFactory, segment: str) -> None:
    user = users.create(credits=0)
    status, body, text = raw_request(stack.edge_url, "GET", f"/api/templates/{segment}", headers=user.headers)
    assert_refused(status, body, (400, 404), text)
    assert "root:" not in text and "acts" not in (body or {})


def test_a_known_template_still_loads(stack: Stack, users: UserFactory) -> None:
    user = users.create(credits=0)
    status, body, text = raw_request(stack.edge_url, "GET", "/api/templates/save-the-cat", headers=user.headers)
    assert status == 200 and body is not None and body["id"] == "save-the-cat", text


HOSTILE_TEMPLATE_IDS = ["../../etc/passwd", "../templates/save-the-cat", "/etc/passwd", "save-the-cat.json",
                        "save-the-cat\u0000", "save-the-cat\n", "..", "SAVE-THE-CAT", "über", "C:\\windows",
                        "save-the-cat/../three-act"]


@pytest.mark.parametrize("template", HOSTILE_TEMPLATE_IDS, ids=repr)
async def test_generate_structure_refuses_hostile_templates_and_holds_nothing(
    client: httpx.Client, users: UserFactory, db: asyncpg.Connection, template: str
) -> None:
    user = users.create(credits=50)
    before = await db_snapshot(db, user.id)
    response = client.post("/api/generate-structure", headers=user.headers,
                           json={"storyInput": STORY, "template": template})
    assert_refused(response.status_code, response.json(), (400, 404, 422), response.text)
    assert await db_snapshot(db, user.id) == before


def test_template_store_never_reads_outside_its_directory(tmp_path: Path) -> None:
    """Templates are read once, from their own directory; a lookup is a dict lookup by a validated id."""
    store_dir = tmp_path / "templates"
    store_dir.mkdir()
    template = {"id": "{id}", "name": "N", "acts": [{"key": "one", "name": "One"}]}
    (store_dir / "inside.json").write_text(json.dumps({**template, "id": "inside"}))
    (tmp_path / "outside.json").write_text(json.dumps({**template, "id": "outside"}))
    store = TemplateStore(store_dir)  # type: ignore[arg-type]  # a Path is a Traversable
    assert store.ids() == ["inside"]
    for hostile in ["../outside", "..%2Foutside", "outside", "/etc/passwd", "inside.json", "inside\n",
                    "inside\x00", "INSIDE", *HOSTILE_TEMPLATE_IDS]:
        with pytest.raises(TemplateError):
            store.get(hostile)
        assert hostile not in store
    with pytest.raises(InvalidTemplateId):
        store.get("../outside")
    assert not any(is_valid_template_id(t) for t in HOSTILE_TEMPLATE_IDS)
    assert store.get("inside").id == "inside"


# -- project paths ---------------------------------------------------------------------------------------

PROJECT_SEGMENTS = ["..%2F..%2Fetc%2Fpasswd", "..", "%2E%2E%2F", "%00", "x%00", "abc%0A", "ABC",
                    "%27%3B%20DROP%20TABLE%20projects%3B--", "%C3%BC", "a" * 300, "-abc", "abc%20def"]


def _project_routes(segment: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that names a project, with `segment` (raw, URL-encoded) as the project path."""
    decoded = unquote(segment)  # in a JSON body: the path as a client would mean it
    return [
        ("GET", f"/api/projects/{segment}", None),
        ("DELETE", f"/api/projects/{segment}", None),
        ("GET", f"/api/projects/{segment}/export?format=fountain", None),
        ("GET", f"/api/projects/{segment}/export?format=json", None),
        ("POST", f"/api/generate-plot-points-for-act/{segment}/setup", None),
        ("POST", f"/api/generate-scene/{segment}/setup", None),
        ("POST", "/api/generate-scenes", {"projectPath": decoded}),
        ("POST", "/api/generate-dialogue", {"projectPath": decoded, "structureKey": "setup", "sceneIndex": 0}),
    ]


@pytest.mark.parametrize("segment", PROJECT_SEGMENTS, ids=lambda s: s[:30])
async def test_project_paths_cannot_traverse_and_hold_nothing(
    stack: Stack, users: UserFactory, db: asyncpg.Connection, segment: str
) -> None:
    user = users.create(credits=50)
    before = await db_snapshot(db, user.id)
    for method, path, body in _project_routes(segment):
        payload = json.dumps(body).encode() if body is not None else None
        status, parsed, text = raw_request(stack.edge_url, method, path, body=payload,
                                           headers={**user.headers, "Content-Type": "application/json"})
        assert_refused(status, parsed, (400, 404, 422), f"{method} {path}: {text}")
    assert await db_snapshot(db, user.id) == before


# -- malformed bodies ------------------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    return b'{"storyInput": {"title": "x", "deep": ' + b"[" * depth + b"]" * depth + b'}, "template": "three-act"}'


MALFORMED = {
    "truncated": (b'{"storyInput": {"title": "x"},', "application/json"),
    "empty": (b"", "application/json"),
    "not json": (b"storyInput=x&template=three-act", "application/json"),
    "array": (b"[]", "application/json"),
    "string": (b'"hello"', "application/json"),
    "null": (b"null", "application/json"),
    "two documents": (b'{"template": "three-act"}{"template": "three-act"}', "application/json"),
    "single quotes": (b"{'template': 'three-act'}", "application/json"),
    "trailing comma": (b'{"template": "three-act",}', "application/json"),
    "utf-8 bom": (b'\xef\xbb\xbf{"storyInput": {"title": "x"}, "template": "three-act"}', "application/json"),
    "utf-16": ('{"storyInput": {"title": "x"}, "template": "three-act"}'.encode("utf-16"), "application/json"),
    "invalid utf-8": (b'{"storyInput": {"title": "\xff\xfe"}, "template": "three-act"}', "application/json"),
    "encoded surrogate": (b'{"storyInput": {"title": "\xed\xa0\x80"}, "template": "three-act"}',
                          "application/json"),
    "escaped lone surrogate": (b'{"storyInput": {"title": "x"}, "template": "\\ud800"}', "application/json"),
    "NUL in a string": (b'{"storyInput": {"title": "x\\u0000y"}, "template": "three-act"}', "application/json"),
    "NaN in story": (b'{"storyInput": {"title": "x", "n": NaN}, "template": "three-act"}', "application/json"),
    "1e309 in story": (b'{"storyInput": {"title": "x", "n": 1e309}, "template": "three-act"}',
                       "application/json"),
    "huge integer": (b'{"storyInput": {"title": "x", "n": ' + b"9" * 5000 + b'}, "template": "three-act"}',
                     "application/json"),
    "10k nested arrays": (_nested(10_000), "application/json"),
    "100 nested arrays": (_nested(100), "application/json"),
    "10k nested objects": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json"),
    "text/plain": (json.dumps({"storyInput": STORY, "template": "three-act"}).encode(), "text/plain"),
    "no content type": (json.dumps({"storyInput": STORY, "template": "three-act"}).encode(), ""),
    "form": (b"storyInput=x&template=three-act", "application/x-www-form-urlencoded"),
    "multipart": (b'--b\r\nContent-Disposition: form-data; name="template"\r\n\r\nthree-act\r\n--b--\r\n',
                  "multipart/form-data; boundary=b"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_bodies_are_4xx_json_and_hold_nothing(
    stack: Stack, users: UserFactory, db: asyncpg.Connection, case: str
) -> None:
    user = users.create(credits=50)
    body, content_type = MALFORMED[case]
    before = await db_snapshot(db, user.id)
    headers = {**user.headers, **({"Content-Type": content_type} if content_type else {})}
    status, parsed, text = raw_request(stack.edge_url, "POST", "/api/generate-structure", headers=headers,
                                       body=body)
    assert_refused(status, parsed, (400, 415, 422), text)
    assert await db_snapshot(db, user.id) == before


@pytest.mark.parametrize("case", ["text/plain", "no content type", "form"])
def test_a_body_that_is_not_json_says_what_is_expected(stack: Stack, users: UserFactory, case: str) -> None:
    user = users.create(credits=0)
    body, content_type = MALFORMED[case]
    headers = {**user.headers, **({"Content-Type": content_type} if content_type else {})}
    status, parsed, text = raw_request(stack.edge_url, "POST", "/api/generate-structure", body=body, headers=headers)
    assert status == 422 and parsed is not None, text
    expected = {"field": "body", "message": "expected a JSON object with Content-Type: application/json"}
    assert expected in parsed["fields"]


@pytest.mark.parametrize("case", ["truncated", "10k nested arrays", "NaN in story", "NUL in a string"])
def test_invalid_json_says_why(stack: Stack, users: UserFactory, case: str) -> None:
    user = users.create(credits=0)
    body, content_type = MALFORMED[case]
    status, parsed, text = raw_request(stack.edge_url, "POST", "/api/generate-structure", body=body,
                                       headers={**user.headers, "Content-Type": content_type})
    assert status == 400 and parsed is not None, text
    assert parsed["error"] == "Invalid JSON"
    assert parsed["message"].startswith("The request body is not valid JSON: ")


async def test_admin_bodies_refuse_malformed_json_too(stack: Stack, db: asyncpg.Connection) -> None:
    before = await db_snapshot(db)
    for case in ("truncated", "10k nested objects", "NaN in story", "escaped lone surrogate", "invalid utf-8"):
        body, content_type = MALFORMED[case]
        for path in ("/api/admin/create-user", "/api/admin/grant-credits"):
            status, parsed, text = raw_request(stack.edge_url, "POST", path, body=body, headers={
                "X-API-Key": stack.admin_key, "Content-Type": content_type})
            assert_refused(status, parsed, (400, 422), f"{case} {path}: {text}")
    assert await db_snapshot(db) == before
