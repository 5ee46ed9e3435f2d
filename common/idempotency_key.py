"""The one Idempotency-Key rule: 1-255 printable ASCII characters (no spaces), scoped to the caller.

The edge's routes declare the header with `IdempotencyKeyHeader`; the services check a key they receive
with `check_idempotency_key`. Both read `PATTERN` and `MAX_LENGTH` from here, so the rule is written once.
"""

from __future__ import annotations

import re

MAX_LENGTH = 255
#: Printable ASCII without the space: what survives every HTTP stack and log unescaped.
PATTERN = r"^[\x21-\x7e]{1,255}$"
_COMPILED = re.compile(PATTERN)


class InvalidIdempotencyKey(ValueError):
    """A key outside the rule."""


def check_idempotency_key(key: str) -> str:
    """The key, or InvalidIdempotencyKey."""
    if not _COMPILED.fullmatch(key):
        raise InvalidIdempotencyKey(f"an Idempotency-Key is 1-{MAX_LENGTH} printable ASCII characters without spaces")
    return key
