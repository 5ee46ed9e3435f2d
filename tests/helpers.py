"""Factories for tests: unique users (parallel-safe names) with keys and credits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from google.protobuf.struct_pb2 import Struct
from prometheus_client.parser import text_string_to_metric_families

from protos import generation_pb2


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # a factory product, not a test class

    id: int
    username: str
    email: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


class UserFactory:
    def __init__(self, client: httpx.Client, admin_headers: dict[str, str]) -> None:
        self.client = client
        self.admin_headers = admin_headers

    def create(self, credits: int = 100, prefix: str = "user") -> TestUser:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"username": name, "email": f"{name}@example.test"}
        if credits:
            body["initialCredits"] = credits
        response = self.client.post("/api/admin/create-user", json=body, headers=self.admin_headers)
        assert response.status_code == 201, response.text
        user = response.json()["user"]
        return TestUser(user["id"], user["username"], user["email"], user["api_key"])

    def stats(self, user: TestUser) -> dict[str, Any]:
        response = self.client.get("/api/my-stats", headers=user.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def balance(self, user: TestUser) -> Decimal:
        return Decimal(str(self.stats(user)["user"]["credits_remaining"]))


def key_leaks(key: str, text: str, longest: int = 12) -> list[str]:
    """Pieces of more than `longest` characters of the key's secret part found in `text`, in any case.

    Empty means the key is not there, not even in part (a display prefix is 8 hex: allowed)."""
    secret, lowered = key.split("_", 1)[1].lower(), text.lower()
    size = longest + 1
    return [secret[i:i + size] for i in range(len(secret) - longest) if secret[i:i + size] in lowered]


#: A user's projects that are part of their account: not metered, or paid (their hold posted). A project a
#: call staged but never paid for is in the table until the cleanup deletes it, and never counts.
PAID_PROJECTS = """
SELECT count(*) FROM projects p WHERE p.user_id = $1 AND (p.hold_id IS NULL OR EXISTS (
    SELECT 1 FROM hold_outcomes o WHERE o.hold_id = p.hold_id AND o.outcome = 'posted'))
"""

#: Every table a request could touch, with the column that ties a row to a user.
_USER_SCOPED = {
    "user_accounts": "id",
    "credit_accounts": "user_id",
    "credit_transactions": "user_id",
    "credit_holds": "user_id",
    "usage_logs": "user_id",
    "projects": "user_id",
}


async def db_snapshot(db: asyncpg.Connection, *user_ids: int) -> dict[str, Any]:
    """Counts of all users, and for the given users every row of every table (hashed, all columns), so a
    rejected request can be shown to have changed nothing: `assert await db_snapshot(...) == before`.

    Scoped to the users a test owns (plus the global user count and highest id, which only creating a user
    moves) so that background work for other tests (the sweeper expiring their holds) cannot disturb it.
    """
    ids = list(user_ids)
    snapshot: dict[str, Any] = dict(
        await db.fetchrow("SELECT count(*) AS users, coalesce(max(id), 0) AS max_user_id FROM user_accounts")
    )
    for table, column in _USER_SCOPED.items():
        snapshot[table] = tuple(await db.fetchrow(
            f"""SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
                FROM {table} t WHERE {column} = ANY($1::bigint[])""", ids))
    snapshot["project_parts"] = tuple(await db.fetchrow(
        """SELECT count(*), md5(coalesce(string_agg(pp::text, '|' ORDER BY pp::text), ''))
           FROM project_parts pp JOIN projects p ON p.id = pp.project_id
           WHERE p.user_id = ANY($1::bigint[])""", ids))
    snapshot["credit_hold_resolutions"] = tuple(await db.fetchrow(
        """SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))
           FROM credit_hold_resolutions r JOIN credit_holds h ON h.id = r.hold_id
           WHERE h.user_id = ANY($1::bigint[])""", ids))
    return snapshot


def structure_request(user_id: int, story: dict[str, Any], template_id: str, *, model: str = "",
                      request_id: str = "") -> generation_pb2.GenerateRequest:
    """A structure call as the edge sends it to generation (tests that speak gRPC build theirs here)."""
    story_input = Struct()
    story_input.update(story)
    return generation_pb2.GenerateRequest(
        user_id=user_id, request_id=request_id, model=model,
        structure=generation_pb2.StructureRequest(story_input=story_input, template_id=template_id))


def metric(client: httpx.Client, sample: str, **labels: str) -> float:
    """The sum of one sample of the edge's /metrics (e.g. `fsg_auth_failures_total`) over the series whose
    labels include `labels`, read with prometheus_client's own parser."""
    return sum(s.value for family in text_string_to_metric_families(client.get("/metrics").text)
               for s in family.samples if s.name == sample and labels.items() <= s.labels.items())
