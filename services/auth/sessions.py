"""Web sessions: the web app's sign-in, owned here because auth owns who a key belongs to.

A browser posts its API key once and gets a random session token (256 bits from the OS CSPRNG) in a cookie.
Only the token's SHA-256 is stored, as only a key's is. A session remembers the hash of the key it was made
from, and resolving it checks that this is still the user's key and the user is enabled: rotating the key
or disabling the user ends every session made with it at once, on every edge, with nothing else to update.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.auth import keys
from services.auth.repository import AuthRepository, UserRecord

#: The longest token a client may send; longer ones are refused before any hashing or SQL.
MAX_TOKEN_LENGTH = 128

_USER = "u.id, u.username, u.email, u.is_admin, u.disabled_at, u.api_key_prefix, u.created_at"

#: Sign-in forgets the user's own ended sessions, so the table holds live sessions and recent history only.
_FORGET_ENDED = """
DELETE FROM web_sessions WHERE user_id = $1 AND (revoked_at IS NOT NULL OR expires_at < now() - interval '1 day')
"""

#: And, a few at a time, everyone's sessions long past their end (the expiry index finds them), so users who
#: never sign in again leave nothing behind for long; each sign-in does a bounded share of that sweep.
_SWEEP_EXPIRED = """
DELETE FROM web_sessions WHERE id IN (
    SELECT id FROM web_sessions WHERE expires_at < now() - interval '1 day' ORDER BY expires_at LIMIT 100)
"""

_INSERT = """
INSERT INTO web_sessions (token_hash, user_id, key_hash, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING expires_at
"""

#: One statement: the session is live (not ended, not expired, not idle), its key is still the user's and the
#: user is enabled; seeing it counts as activity for the idle timeout.
_RESOLVE = f"""
UPDATE web_sessions s SET last_seen_at = now()
FROM user_accounts u
WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
  AND s.last_seen_at > now() - make_interval(secs => $2)
  AND u.id = s.user_id AND u.api_key_hash = s.key_hash AND u.disabled_at IS NULL
RETURNING {_USER}, s.expires_at
"""

_END = "UPDATE web_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL RETURNING id"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Session:
    user: UserRecord
    expires_at: datetime
    token: str = ""


class SessionStore:
    """Create, resolve and end sessions. `lifetime` is the absolute length of a session, `idle` how long it
    may go unused (both seconds, AUTH_SESSION_LIFETIME_SECONDS and AUTH_SESSION_IDLE_SECONDS)."""

    def __init__(self, pool: asyncpg.Pool, users: AuthRepository, *, lifetime: float, idle: float) -> None:
        self._pool = pool
        self._users = users
        self._lifetime = lifetime
        self._idle = idle

    async def create(self, api_key: str) -> Session | None:
        """A new session for the key's enabled user; None for a key that is not one."""
        user = await self._users.user_for_key(api_key)
        if user is None:
            return None
        token = secrets.token_urlsafe(32)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_FORGET_ENDED, user.id)
            await conn.execute(_SWEEP_EXPIRED)
            expires_at = await conn.fetchval(_INSERT, token_hash(token), user.id, keys.key_hash(api_key),
                                             float(self._lifetime))
        return Session(user, expires_at, token)

    async def resolve(self, token: str) -> Session | None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        row = await self._pool.fetchrow(_RESOLVE, token_hash(token), float(self._idle))
        if row is None:
            return None
        return Session(UserRecord.from_row(row), row["expires_at"])

    async def end(self, token: str) -> bool:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return False
        return await self._pool.fetchval(_END, token_hash(token)) is not None
