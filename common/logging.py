"""Process-wide logging with secret redaction and escaping.

API keys, Anthropic keys, the service token and passwords in URLs must never reach a log line, whoever
logs them (our code, asyncpg, uvicorn, grpc), so redaction is a filter on every handler, not a habit. The
same filter keeps request data from forging or flooding the log: every argument of a record is escaped and
cut (`printable`), and so is the final message, so no record spans two lines or carries a NUL.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from numbers import Number

#: One argument of a log record (a path, a key prefix, an error message) is cut after this many characters.
MAX_ARG_CHARS = 200
#: A whole message is cut after this many: room for several full arguments, never a 60 kB line.
MAX_MESSAGE_CHARS = 4_000

#: Every API key we issue is `user_` or `admin_` + 64 lowercase hex (services/auth/keys.py). The patterns
#: below are deliberately wider than that format, so a key is caught however it arrives: in any case, glued
#: to other text (no word boundaries), URL-encoded (`user%5F…`), truncated or with characters appended, and
#: the secret part alone. What is kept (the prefix and 6 hex) is less than the 8 hex operators already see.
_HEX_RUN = r"[0-9a-fA-F]"
#: (cheap substring that must be in the lower-cased text for the pattern to apply, or None; pattern;
#: replacement). Every log line passes through here, so patterns that rarely apply are skipped by a
#: substring test; the two that run on every line avoid `(?i)` and a leading `\w+`, which slow the scan.
_PATTERNS: list[tuple[str | None, re.Pattern[str], str]] = [
    # Values of an api_key query parameter or an X-API-Key header, whatever they contain.
    ("key", re.compile(r"(?i)(api(?:_|%5f)key(?:=|%3d))[^&\s\"']+"), r"\1…"),
    ("key", re.compile(r"(?i)(x-api-key['\"]?\s*[:,=]\s*b?['\"]?)[^'\"\s,}&]+"), r"\1…"),
    # Anything shaped like one of our keys: prefix + at least 13 hex (usernames such as `user_` + 12 hex
    # stay readable).
    (None, re.compile(rf"((?:[uU][sS][eE][rR]|[aA][dD][mM][iI][nN])(?:_|%5[fF]){_HEX_RUN}{{6}}){_HEX_RUN}{{7,}}"),
     r"\1…"),
    # A key's secret part on its own: any run of 40+ hex digits (request ids are 32 and stay readable). The
    # scan is left to right and greedy, so a match always starts at the first digit of a run.
    (None, re.compile(rf"({_HEX_RUN}{{6}}){_HEX_RUN}{{34,}}"), r"\1…"),
    ("sk-ant-", re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}"), "sk-ant-…"),
    ("://", re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1****@"),
    # The internal service token in an `authorization: Bearer …` header.
    ("bearer", re.compile(r"(?i)\b(bearer\s+)[!-~]+"), r"\1…"),
]


def redact(text: str) -> str:
    """Remove secrets (API keys, provider keys, bearer tokens, URL passwords, api_key query values)."""
    lowered = text.lower()
    for guard, pattern, replacement in _PATTERNS:
        if guard is None or guard in lowered:
            text = pattern.sub(replacement, text)
    return text


def printable(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """`text` fit for one log line: control characters escaped (a `%0A` in a path or a key must not forge a
    second line, a NUL must not reach the file) and cut after `limit` characters, with "…" appended.

    A text about to be cut is redacted first: a cut through a key could leave a piece too short for the
    patterns to recognise but long enough to matter."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        text = redact(text)
    return text if len(text) <= limit else text[:limit] + "…"


class _Printable:
    """A log argument shown through `printable`, whether the message formats it with %s or %r."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return printable(str(self.value))

    def __repr__(self) -> str:
        return printable(repr(self.value))


def _printable_arg(value: object) -> object:
    """Numbers stay numbers (`%d` and `%.1f` need them, and they cannot carry request data); anything else
    (a path, a key, an exception whose message quotes input) is escaped and cut when formatted."""
    return value if isinstance(value, Number) else _Printable(value)


def _printable_args(args: tuple[object, ...] | Mapping[str, object]) -> tuple[object, ...] | Mapping[str, object]:
    """A record's arguments, each through `_printable_arg` (a single mapping is `%(name)s` style)."""
    if isinstance(args, Mapping):
        return {name: _printable_arg(value) for name, value in args.items()}
    return tuple(_printable_arg(value) for value in args)


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message: arguments escaped and cut, secrets redacted, then the whole
    message escaped and cut (a control character in the format string itself, or from a caller that
    formatted its message before logging). Tracebacks keep their lines, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = _printable_args(record.args)
        # Formatted once here; the handler's formatter then reuses the cleaned text instead of redoing it.
        record.msg, record.args = printable(redact(record.getMessage()), MAX_MESSAGE_CHARS), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Log to stderr as `time level service logger: message`, redacted, escaped and cut (`RedactingFilter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request from the SDK's client is noise (and CPU) at INFO; keep their warnings.
    for chatty in ("httpx", "httpx2", "httpcore", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
