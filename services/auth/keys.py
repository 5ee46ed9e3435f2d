"""API keys: `user_` or `admin_` + 64 hex characters from the OS CSPRNG.

Only SHA-256 of the whole key is stored (a fast hash is right here: the key has 256 bits of entropy,
so there is nothing to brute-force, and validation runs on every request), plus a short display prefix.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PATTERN = re.compile(r"(user|admin)_[0-9a-f]{64}")
DISPLAY_PREFIX_LEN = 12


def new_key(is_admin: bool) -> str:
    """A fresh key for an admin or a user."""
    return f"{'admin' if is_admin else 'user'}_{secrets.token_hex(32)}"


def key_hash(key: str) -> bytes:
    """The stored form: SHA-256 of the whole key."""
    return hashlib.sha256(key.encode("ascii")).digest()


def display_prefix(key: str) -> str:
    """What operators see in listings ("user_3f9a2c1b"), never enough to use."""
    return key[: key.index("_") + 1 + 8]


def looks_like_key(key: str) -> bool:
    """Cheap format check, so malformed keys never reach the database."""
    return KEY_PATTERN.fullmatch(key) is not None
