"""Factories for tests: unique users (parallel-safe names) with keys and credits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx


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
