"""Process-wide logging with secret redaction.

API keys, Anthropic keys, the service token and passwords in URLs must never reach a log line, whoever
logs them (our code, asyncpg, uvicorn, grpc), so redaction is a filter on every handler, not a habit.
"""

from __future__ import annotations

import logging
import re
import sys

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b((?:user|admin)_[0-9a-f]{6})[0-9a-f]{58}\b"), r"\1…"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{4,}"), "sk-ant-…"),
    (re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@"), r"\1****@"),
    (re.compile(r"(api_key=)[^&\s]+"), r"\1…"),
    (re.compile(r"\b(bearer\s+)[!-~]+", re.IGNORECASE), r"\1…"),  # the internal service token
]


def redact(text: str) -> str:
    """Remove secrets (API keys, provider keys, bearer tokens, URL passwords, api_key query values)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
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
