"""Process-wide logging: one event schema for every process, as JSON lines or a console line, with secret
redaction and escaping.

Every line, whoever logs it (our code through structlog or the stdlib, asyncpg, uvicorn, grpc), is rendered
by one structlog `ProcessorFormatter` on the root handler, so every line has the same keys (`SCHEMA`):

    {"ts", "level", "service", "event", "message", "request_id", "user_id", "logger", ...fields}

`event` is a stable, searchable name: a named event's own (`auth.failed`, `credits.limit_hit`; README's
event catalogue), else the logger's name. `request_id` and `user_id` are what `common.request_id` has bound
for the request being served (null outside one). LOG_FORMAT=json writes one JSON object per line
(production); LOG_FORMAT=console writes `ts LEVEL service logger: message key=value …` (`make run`).

API keys, Anthropic keys, the service token and passwords in URLs must never reach a log line, so
redaction is part of rendering, not a habit: a stdlib record's arguments and message are escaped, cut and
redacted by `RedactingFilter` on the handler, and a structlog event's values by `_clean` before rendering.
The same keeps request data from forging or flooding the log: no value spans two lines or carries a NUL,
and none is longer than its cap.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from numbers import Number
from typing import Any, Literal

import structlog

from common import request_id as context

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
        if isinstance(record.msg, dict):  # a structlog event: `_clean` sees to its values when it is rendered
            return True
        if record.args:
            record.args = _printable_args(record.args)
        # Formatted once here; the handler's formatter then reuses the cleaned text instead of redoing it.
        record.msg, record.args = printable(redact(record.getMessage()), MAX_MESSAGE_CHARS), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


#: The keys every line has, in this order (null where there is nothing to say).
SCHEMA = ("ts", "level", "service", "event", "message", "request_id", "user_id", "logger")
#: A traceback keeps its lines (redacted) but not without end.
MAX_TRACEBACK_CHARS = 20_000
LogFormat = Literal["json", "console"]


#: The last whole second formatted, with its text (most lines share one); one tuple, so a thread that reads
#: it while another replaces it sees one pair or the other, never a mix.
_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 UTC with milliseconds, from the record's own time (when it was logged, not rendered)."""
    global _second
    second, text = _second
    if int(record.created) != second:
        second = int(record.created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int(record.msecs):03d}Z"


def _clean(value: object, limit: int = MAX_ARG_CHARS) -> object:
    """A field's value fit for a line: numbers, booleans and None as they are, anything else as redacted,
    escaped and capped text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return printable(redact(str(value)), limit)


class _Shape:
    """Turns any record's event dict into the schema: the shared keys first, a named event's fields after."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        record: logging.LogRecord = event_dict.pop("_record")
        from_structlog = event_dict.pop("_from_structlog", False)
        event_dict.pop("_logger", None)
        event_dict.pop("_name", None)
        exc_info = event_dict.pop("exc_info", None)
        event_dict.pop("positional_args", None)
        text = event_dict.pop("event", "")
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
        }
        if from_structlog:
            # A named event: the name as given; its message (if any) and fields cleaned here.
            line["event"] = _clean(text, 100)
            line["message"] = _clean(event_dict.pop("message", text), MAX_MESSAGE_CHARS)
        else:
            # A stdlib record: `RedactingFilter` already redacted, escaped and cut its message.
            line["event"] = record.name
            line["message"] = text
        # An event may name its user (a service knows it from the request; only the edge binds one).
        named_user = event_dict.pop("user_id", None)
        line["request_id"] = context.request_id.get()
        line["user_id"] = context.user_id.get() if named_user is None else _clean(named_user)
        line["logger"] = record.name
        for key, value in event_dict.items():
            if key not in line:
                line[key] = _clean(value)
        if exc_info:
            line["exception"] = _traceback(record, exc_info)
        return line


def _traceback(record: logging.LogRecord, exc_info: Any) -> str | None:
    """The record's traceback, redacted (the filter's text for a stdlib record), or None."""
    if record.exc_text:
        text = record.exc_text
    else:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if not isinstance(exc_info, tuple) or exc_info[0] is None:
            return None
        text = redact(logging.Formatter().formatException(exc_info))
    return text if len(text) <= MAX_TRACEBACK_CHARS else text[:MAX_TRACEBACK_CHARS] + "…"


def render_json(logger: Any, method: str, line: MutableMapping[str, Any]) -> str:
    """One JSON object on one line (control characters and non-ASCII escaped by the encoder)."""
    return json.dumps(line, default=str)


def render_console(logger: Any, method: str, line: MutableMapping[str, Any]) -> str:
    """`ts LEVEL service logger: message key=value …`, the traceback on the lines after it. The request id
    and user are appended unless the message already names them (the access log line does)."""
    message = str(line["message"])
    parts = [f"{line['ts']} {line['level'].upper()} {line['service']} {line['logger']}: {message}"]
    if line["event"] not in (line["logger"], message):
        parts.append(f"event={line['event']}")
    for key, value in line.items():
        if key in SCHEMA or key == "exception" or value is None:
            continue
        parts.append(f"{key}={value}")
    if line["request_id"] is not None and str(line["request_id"]) not in message:
        parts.append(f"request_id={line['request_id']}")
    if line["user_id"] is not None and f"user={line['user_id']}" not in message:
        parts.append(f"user_id={line['user_id']}")
    text = " ".join(parts)
    return f"{text}\n{line['exception']}" if line.get("exception") else text


def formatter(service: str, fmt: LogFormat = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter every line of a process goes through, structlog's or a stdlib logger's."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[_Shape(service), render_json if fmt == "json" else render_console],
        foreign_pre_chain=[],
        keep_exc_info=False,
    )


#: One line per HTTP request from the SDK's client is noise (and CPU) at INFO; their warnings are kept.
_CHATTY = ("httpx", "httpx2", "httpcore", "aiohttp.access")


def make_handler(service: str, fmt: str = "json") -> logging.Handler:
    """The root handler of a process: stderr, the shared formatter, the redacting filter. Also points
    structlog at the stdlib, so named events reach this handler too (a process spawned by uvicorn's workers
    builds its handler here, from `logging_config`, and has no other chance to)."""
    if fmt not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be json or console, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(service, fmt))  # type: ignore[arg-type]
    handler.addFilter(RedactingFilter())
    configure_structlog()
    return handler


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Log to stderr in the shared schema, as JSON lines or console lines (`fmt`), redacted, escaped and cut
    (`RedactingFilter` on the handler for stdlib records, `_Shape` for structlog events)."""
    handler = make_handler(service, fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def logging_config(service: str, level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """`setup_logging` as a `logging.config.dictConfig` dict, for uvicorn to apply in each worker process it
    spawns (EDGE_WORKERS > 1: a spawned process inherits no logging set up by its parent)."""
    quiet = logging.getLevelName(max(logging.WARNING, logging.getLevelName(level.upper())))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"shared": {"()": make_handler, "service": service, "fmt": fmt}},
        "root": {"handlers": ["shared"], "level": level.upper()},
        "loggers": {name: {"level": quiet} for name in _CHATTY},
    }


def configure_structlog() -> None:
    """structlog loggers hand their events to the stdlib logger of the same name, so they reach the same
    handler and formatter (and a disabled level costs a level check, nothing more)."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structlog logger for named events: `get_logger(__name__).warning("auth.failed", reason=…)`."""
    return structlog.stdlib.get_logger(name)
