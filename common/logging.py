"""Process-wide logging with secret redaction.

API keys, Anthropic keys, the service token and passwords in URLs must never reach a log line, whoever
logs them (our code, asyncpg, uvicorn, grpc), so redaction is a filter on every handler, not a habit.
"""

from __future__ import annotations

import logging
import re
import sys

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


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatted once here; the handler's formatter then reuses the cleaned text instead of redoing it.
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Log to stderr as `time level service logger: message`, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request from the SDK's client is noise (and CPU) at INFO; keep their warnings.
    for chatty in ("httpx", "httpx2", "httpcore", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
