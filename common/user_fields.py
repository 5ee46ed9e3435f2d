"""What a username and an email address may be: one rule, written once.

The edge's request bodies (create-user), the bulk import's CSV rows and auth itself (which has the last word)
all check against these patterns; the database repeats the username rule as a CHECK constraint
(migrations/0001_auth.sql), which cannot import Python.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"
#: RFC 5321's limit on a forward path.
MAX_EMAIL_LENGTH = 254

#: A username as a request or a CSV row gives it (surrounding spaces are dropped first).
Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=USERNAME_PATTERN)]
#: An email address as a request or a CSV row gives it (surrounding spaces are dropped first).
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=MAX_EMAIL_LENGTH, pattern=EMAIL_PATTERN)
]
