"""The REST API cannot lock itself out: disabling the last enabled admin, or rotating its key (whose only copy
would be the response body), is 409 with a JSON body and changes nothing; the admin key keeps working.
With another enabled admin, either admin may be disabled or rotated.
"""

from __future__ import annotations

import asyncpg
import httpx

from services.auth.keys import key_hash
from tests.auth.admins import BOOTSTRAP_ADMIN, bootstrap_admin_kept, enabled_admins, extra_admin
from tests.stack import Stack

DISABLE_REFUSED = {"error": "Last enabled admin", "message": "Cannot disable the last enabled admin"}


def admin_works(client: httpx.Client, headers: dict[str, str]) -> bool:
    return client.get("/api/admin/users", params={"limit": 1}, headers=headers).status_code == 200


async def key_hash_of(db: asyncpg.Connection, username: str) -> bytes:
    return bytes(await db.fetchval("SELECT api_key_hash FROM user_accounts WHERE username = $1", username))


async def test_disabling_the_last_enabled_admin_is_409_and_the_key_still_works(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    async with bootstrap_admin_kept(stack):
        assert await enabled_admins(db) == [BOOTSTRAP_ADMIN]
        for name in (BOOTSTRAP_ADMIN, BOOTSTRAP_ADMIN.upper()):  # usernames are case-insensitive
            refused = client.post(f"/api/admin/users/{name}/disable", headers=admin_headers)
            assert refused.status_code == 409, refused.text
            assert refused.json() == DISABLE_REFUSED
        assert admin_works(client, admin_headers)
        assert await enabled_admins(db) == [BOOTSTRAP_ADMIN]


async def test_rotating_the_last_enabled_admins_key_over_rest_is_409_and_the_old_key_still_works(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    async with bootstrap_admin_kept(stack):
        assert await enabled_admins(db) == [BOOTSTRAP_ADMIN]
        refused = client.post(f"/api/admin/users/{BOOTSTRAP_ADMIN}/rotate-key", headers=admin_headers)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert set(body) == {"error", "message"} and body["error"] == "Last enabled admin", body
        assert "fsg-auth rotate-admin-key" in body["message"], body
        assert "admin_" not in refused.text  # no new key anywhere in the answer
        assert admin_works(client, admin_headers)
        assert await key_hash_of(db, BOOTSTRAP_ADMIN) == key_hash(stack.admin_key)


async def test_with_another_enabled_admin_either_may_be_disabled_or_rotated(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str], db: asyncpg.Connection
) -> None:
    async with extra_admin(stack) as other, bootstrap_admin_kept(stack):
        name = other.user.username
        rotated = client.post(f"/api/admin/users/{name}/rotate-key", headers=admin_headers)
        assert rotated.status_code == 200, rotated.text
        other_headers = {"X-API-Key": rotated.json()["api_key"]}
        assert admin_works(client, other_headers) and not admin_works(client, other.headers)

        disabled = client.post(f"/api/admin/users/{name}/disable", headers=admin_headers)
        assert disabled.status_code == 200, disabled.text
        assert not admin_works(client, other_headers)
        # Now the bootstrap admin is the last one again.
        refused = client.post(f"/api/admin/users/{BOOTSTRAP_ADMIN}/disable", headers=admin_headers)
        assert refused.status_code == 409 and refused.json() == DISABLE_REFUSED

        assert client.post(f"/api/admin/users/{name}/enable", headers=admin_headers).status_code == 200
        # The other way round: the other admin disables the bootstrap admin, then cannot disable itself.
        gone = client.post(f"/api/admin/users/{BOOTSTRAP_ADMIN}/disable", headers=other_headers)
        assert gone.status_code == 200, gone.text
        assert not admin_works(client, admin_headers)
        itself = client.post(f"/api/admin/users/{name}/disable", headers=other_headers)
        assert itself.status_code == 409 and itself.json() == DISABLE_REFUSED
        back = client.post(f"/api/admin/users/{BOOTSTRAP_ADMIN}/enable", headers=other_headers)
        assert back.status_code == 200, back.text
        assert admin_works(client, admin_headers)
        assert await enabled_admins(db) == [BOOTSTRAP_ADMIN, name]
