"""Auth data access: user accounts and key hashes. asyncpg errors become auth domain errors here."""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from common import user_fields
from common.errors import DomainError
from common.logging import get_logger, printable
from services.auth import keys, queries
from services.auth.errors import (
    CannotDisableLastAdmin,
    CannotRotateLastAdmin,
    EmailTaken,
    InvalidUserInput,
    LastEnabledAdmin,
    UsernameTaken,
    UserNotFound,
)

USERNAME_PATTERN = re.compile(user_fields.USERNAME_PATTERN)
EMAIL_PATTERN = re.compile(user_fields.EMAIL_PATTERN)
MAX_PAGE = 500
#: The most users one CreateUsers call creates, and the most usernames, emails or ids one FindUsers names.
MAX_BATCH = 5_000


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
    if len(email) > user_fields.MAX_EMAIL_LENGTH or not EMAIL_PATTERN.fullmatch(email):
        raise InvalidUserInput("email is not a valid address")
    return username, email


async def _update_sparing_last_admin(
    conn: asyncpg.Connection, update: str, user_id: int, refusal: type[LastEnabledAdmin], *args: object
) -> asyncpg.Record:
    """Run a one-user UPDATE guarded by `queries.SPARES_LAST_ADMIN` and return the row, or raise `refusal`.

    The guard alone is not enough under READ COMMITTED: two transactions disabling two admins would each
    see the other admin still enabled, and both commit. So a change to an admin first locks every admin
    row (in the caller's transaction); the second caller waits for the first to commit, and its UPDATE, a
    new statement with a new snapshot, then sees that change and refuses.
    """
    await conn.execute(queries.LOCK_ADMINS_IF_ADMIN, user_id)
    row = await conn.fetchrow(update, user_id, *args)
    if row is not None:
        return row
    if await conn.fetchval(queries.USER_EXISTS, user_id):
        raise refusal()
    raise UserNotFound()


#: Which unique index a new user collided with → the error it means (migrations/0001_auth.sql).
_TAKEN: dict[str, type[EmailTaken | UsernameTaken]] = {
    "user_accounts_email_key": EmailTaken,
    "user_accounts_username_key": UsernameTaken,
}


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
            error = _TAKEN.get(exc.constraint_name or "")
            if error is None:
                raise
            raise error() from exc
        return UserRecord.from_row(row), key

    async def create_users(self, items: Sequence[tuple[str, str, bool]]) -> list[tuple[UserRecord, str] | DomainError]:
        """Create many users (username, email, is_admin) in one statement, for the bulk import: 10,000 users
        are 2-10 statements instead of 10,000 round trips.

        Each item is answered, in order, as `create_user` would answer it alone: the user and its key, or the
        refusal (InvalidUserInput; UsernameTaken or EmailTaken for a name held by an existing user or by an
        earlier item). A taken name skips its row instead of failing the statement, so the others still go in.
        """
        if len(items) > MAX_BATCH:
            raise InvalidUserInput(f"at most {MAX_BATCH} users per call")
        answers: list[tuple[UserRecord, str] | DomainError | None] = [None] * len(items)
        valid: list[tuple[int, str, str, bool, str]] = []
        for i, (username, email, is_admin) in enumerate(items):
            try:
                username, email = validate_new_user(username, email)
            except InvalidUserInput as exc:
                answers[i] = exc
                continue
            valid.append((i, username, email, is_admin, keys.new_key(is_admin)))
        if valid:
            rows = await self._pool.fetch(
                queries.INSERT_USERS, [v[1] for v in valid], [v[2] for v in valid],
                [keys.key_hash(v[4]) for v in valid], [keys.display_prefix(v[4]) for v in valid],
                [v[3] for v in valid],
            )
            # The hash is unique, so it names the item each stored row came from.
            stored = {bytes(row["api_key_hash"]): row for row in rows}
            skipped = []
            for i, username, _, _, key in valid:
                row = stored.get(keys.key_hash(key))
                if row is None:
                    skipped.append((i, username))
                else:
                    answers[i] = (UserRecord.from_row(row), key)
            if skipped:
                taken = await self._pool.fetch(queries.FIND_USERS, [name for _, name in skipped], [], [])
                names = {row["username"].lower() for row in taken}
                for i, username in skipped:
                    # Users are never deleted: a row that was skipped collided with one that is there now.
                    answers[i] = UsernameTaken() if username.lower() in names else EmailTaken()
        return [answer for answer in answers if answer is not None]

    async def find_users(self, usernames: Sequence[str], emails: Sequence[str], ids: Sequence[int]) -> list[
        UserRecord
    ]:
        """The users with any of these usernames or emails (case-insensitively, as the unique indexes compare
        them) or ids, each once. A name no user could have is left out before the query (a NUL would be a
        database error, not "no such user")."""
        if max(len(usernames), len(emails), len(ids)) > MAX_BATCH:
            raise InvalidUserInput(f"at most {MAX_BATCH} usernames, emails and ids per call")
        names = [u for u in usernames if USERNAME_PATTERN.fullmatch(u)]
        mails = [e for e in emails if len(e) <= user_fields.MAX_EMAIL_LENGTH and EMAIL_PATTERN.fullmatch(e)]
        if not (names or mails or ids):
            return []
        rows = await self._pool.fetch(queries.FIND_USERS, names, mails, list(ids))
        return [UserRecord.from_row(r) for r in rows]

    async def user_for_key(self, key: str) -> UserRecord | None:
        """The enabled user owning this key, or None (unknown, malformed or disabled).

        The lookup is by SHA-256 digest, so the index compares digests, never keys: timing it tells an
        attacker at most how many leading bytes of *a digest* matched, which gives nothing towards a key
        (finding a key for a chosen digest prefix is a preimage search). The final equality decision is
        still made with `hmac.compare_digest`, so it is constant-time whatever the index did.
        """
        if not keys.looks_like_key(key):
            _failed("malformed", key)
            return None
        digest = keys.key_hash(key)
        row = await self._pool.fetchrow(queries.USER_BY_KEY_HASH, digest)
        if row is None or not hmac.compare_digest(bytes(row["api_key_hash"]), digest):
            _failed("unknown", key)
            return None
        if row["disabled_at"] is not None:
            _failed("disabled", key, row["id"])
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

    async def list_users(self, after_id: int, page_size: int, search: str = "") -> list[UserRecord]:
        """A page of users by id; with `search`, those whose username or email starts with it."""
        page_size = min(max(page_size or 50, 1), MAX_PAGE)
        search = search.strip().lower()
        if len(search) > user_fields.MAX_EMAIL_LENGTH:
            raise InvalidUserInput(f"search must be at most {user_fields.MAX_EMAIL_LENGTH} characters")
        if search:
            pattern = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = await self._pool.fetch(queries.SEARCH_USERS, after_id, page_size, pattern)
        else:
            rows = await self._pool.fetch(queries.LIST_USERS, after_id, page_size)
        return [UserRecord.from_row(r) for r in rows]

    async def rotate_key(self, user_id: int, *, on_host: bool = False) -> tuple[UserRecord, str]:
        """A new key replaces the old hash in one statement: the old key stops working at once.

        Over the API (the default) the last enabled admin's key is not rotated: the new key would exist only
        in the answer, and were that lost no admin could use the API again. The operator CLI (`on_host`)
        prints the key where it runs, so it may rotate any key, that admin's included.
        """
        current = await self.get_user(user_id=user_id)
        key = keys.new_key(current.is_admin)
        replace = (keys.key_hash(key), keys.display_prefix(key))
        async with self._pool.acquire() as conn, conn.transaction():
            if on_host:
                row = await conn.fetchrow(queries.ROTATE_KEY, user_id, *replace)
                if row is None:
                    raise UserNotFound()
            else:
                row = await _update_sparing_last_admin(
                    conn, queries.ROTATE_KEY_SPARING_LAST_ADMIN, user_id, CannotRotateLastAdmin, *replace
                )
            await conn.execute(queries.NOTIFY_REVOKED, str(user_id))
        return UserRecord.from_row(row), key

    async def set_disabled(self, user_id: int, disabled: bool) -> UserRecord:
        """Disable (the key stops working at once) or enable a user; never disables the last enabled admin,
        which would lock everyone out of the API until someone ran `fsg-auth enable` on the host."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not disabled:
                row = await conn.fetchrow(queries.ENABLE_USER, user_id)
                if row is None:
                    raise UserNotFound()
                return UserRecord.from_row(row)
            row = await _update_sparing_last_admin(conn, queries.DISABLE_USER, user_id, CannotDisableLastAdmin)
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


_log = get_logger(__name__)


def _failed(reason: str, key: str, user_id: int | None = None) -> None:
    """Log a refused key as the `auth.failed` event: why, and no more of the key than operators see in
    listings (`key_owner` only for a disabled user's key, which is known)."""
    _log.warning("auth.failed", reason=reason, key_prefix=printable(key[:11]), key_owner=user_id)
