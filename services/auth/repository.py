"""Auth data access: user accounts and key hashes. asyncpg errors become auth domain errors here."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.auth import keys, queries
from services.auth.errors import EmailTaken, InvalidUserInput, UsernameTaken, UserNotFound

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    email: str
    is_admin: bool
    disabled: bool
    key_prefix: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRecord:
        return cls(
            id=row["id"],
            username=row["username"],
            email=row["email"],
            is_admin=row["is_admin"],
            disabled=row["disabled_at"] is not None,
            key_prefix=row["api_key_prefix"],
            created_at=row["created_at"],
        )


def validate_new_user(username: str, email: str) -> tuple[str, str]:
    """Normalise and check a new user's username and email (the edge checks too; this is the authority)."""
    username, email = username.strip(), email.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidUserInput("username must be 3-64 characters: letters, digits, '_', '.', '-'")
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise InvalidUserInput("email is not a valid address")
    return username, email


class AuthRepository:
    """Users and keys. Takes a pool; each method is one statement or one explicit transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_user(self, username: str, email: str, is_admin: bool) -> tuple[UserRecord, str]:
        username, email = validate_new_user(username, email)
        key = keys.new_key(is_admin)
        try:
            row = await self._pool.fetchrow(
                queries.INSERT_USER, username, email, keys.key_hash(key), keys.display_prefix(key), is_admin
            )
        except asyncpg.UniqueViolationError as exc:
            if "email" in (exc.constraint_name or ""):
                raise EmailTaken() from exc
            raise UsernameTaken() from exc
        return UserRecord.from_row(row), key

    async def user_for_key(self, key: str) -> UserRecord | None:
        """The enabled user owning this key, or None (unknown, malformed or disabled).

        The lookup is by SHA-256 digest, so the index compares digests, never keys: timing it tells an
        attacker at most how many leading bytes of *a digest* matched, which gives nothing towards a key
        (finding a key for a chosen digest prefix is a preimage search). The final equality decision is
        still made with `hmac.compare_digest`, so it is constant-time whatever the index did.
        """
        if not keys.looks_like_key(key):
            return None
        digest = keys.key_hash(key)
        row = await self._pool.fetchrow(queries.USER_BY_KEY_HASH, digest)
        if row is None or not hmac.compare_digest(bytes(row["api_key_hash"]), digest):
            return None
        if row["disabled_at"] is not None:
            return None
        return UserRecord.from_row(row)

    async def get_user(self, *, user_id: int | None = None, username: str | None = None) -> UserRecord:
        if user_id is not None:
            row = await self._pool.fetchrow(queries.USER_BY_ID, user_id)
        elif username is None or not USERNAME_PATTERN.fullmatch(username):
            raise UserNotFound()  # no such user can exist; and a NUL would be a database error, not a 404
        else:
            row = await self._pool.fetchrow(queries.USER_BY_USERNAME, username)
        if row is None:
            raise UserNotFound()
        return UserRecord.from_row(row)

    async def list_users(self, after_id: int, page_size: int) -> list[UserRecord]:
        page_size = min(max(page_size or 50, 1), MAX_PAGE)
        rows = await self._pool.fetch(queries.LIST_USERS, after_id, page_size)
        return [UserRecord.from_row(r) for r in rows]

    async def rotate_key(self, user_id: int) -> tuple[UserRecord, str]:
        """A new key replaces the old hash in one statement: the old key stops working at once."""
        current = await self.get_user(user_id=user_id)
        key = keys.new_key(current.is_admin)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(queries.ROTATE_KEY, user_id, keys.key_hash(key), keys.display_prefix(key))
            if row is None:
                raise UserNotFound()
            await conn.execute(queries.NOTIFY_REVOKED, str(user_id))
        return UserRecord.from_row(row), key

    async def set_disabled(self, user_id: int, disabled: bool) -> UserRecord:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(queries.SET_DISABLED, user_id, disabled)
            if row is None:
                raise UserNotFound()
            if disabled:
                await conn.execute(queries.NOTIFY_REVOKED, str(user_id))
        return UserRecord.from_row(row)

    async def ensure_admin(self, username: str = "admin", email: str = "admin@localhost.localdomain") -> tuple[
        UserRecord, str | None
    ]:
        """Create the first admin if none exists; returns (admin, key) with key None when it existed."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(queries.BOOTSTRAP_LOCK)
            row = await conn.fetchrow(queries.FIRST_ADMIN)
            if row is not None:
                return UserRecord.from_row(row), None
            key = keys.new_key(True)
            row = await conn.fetchrow(
                queries.INSERT_USER, username, email, keys.key_hash(key), keys.display_prefix(key), True
            )
            return UserRecord.from_row(row), key
