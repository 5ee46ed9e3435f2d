"""The logging filter every process installs keeps request data from forging or flooding the log: each
argument is escaped and cut, the whole message too, numbers keep their formats, tracebacks keep their lines,
and secrets are still redacted, even where a cut runs through one."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from common.logging import MAX_ARG_CHARS, MAX_MESSAGE_CHARS, RedactingFilter, printable
from services.auth import keys
from tests.helpers import key_leaks


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose handler is set up as `setup_logging` sets up every process's (the filter on the handler),
    writing bare messages to a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.log_escaping")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield logger, out
    finally:
        logger.handlers.clear()


def test_newline_cr_and_nul_in_arguments_stay_on_one_line(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.info("rejected API key %s… on %s", "a\nFAKE", "/x\r\x00y")
    assert out.getvalue() == "rejected API key a\\nFAKE… on /x\\r\\x00y\n"


def test_a_message_formatted_before_logging_is_escaped_too(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    path = "/a\nFAKE 2026-01-01 INFO edge edge.access: GET / 200\x00"
    logger.info(f"path {path}")  # what a careless caller (or a library) does
    assert out.getvalue().count("\n") == 1 and "\x00" not in out.getvalue()
    assert out.getvalue().startswith("path /a\\nFAKE 2026")


def test_a_60000_character_argument_is_cut(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.info("GET %s 404", "/" + "z" * 60_000)
    assert out.getvalue() == f"GET /{'z' * (MAX_ARG_CHARS - 1)}… 404\n"


def test_the_whole_message_is_cut(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.info("%s" * 100, *["z" * 1000] * 100)
    logger.info("z" * 60_000)
    first, second = out.getvalue().splitlines()
    assert first == (("z" * MAX_ARG_CHARS + "…") * 100)[:MAX_MESSAGE_CHARS] + "…"
    assert second == "z" * MAX_MESSAGE_CHARS + "…"


def test_numbers_keep_their_formats_and_objects_their_repr(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.info("GET %s %d %.1fms user=%s", "/me", 200, 12.345, None)
    logger.info("failed: %r / %s", ValueError("bad\ninput"), ValueError("bad\ninput"))
    logger.info("%(path)s took %(ms).2f", {"path": "/x\ny", "ms": 1.5})
    assert out.getvalue().splitlines() == [
        "GET /me 200 12.3ms user=None", "failed: ValueError('bad\\ninput') / bad\\ninput", "/x\\ny took 1.50"]


def test_a_traceback_keeps_its_lines_and_the_message_is_escaped(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("unhandled error on %s", "/x\nFAKE")
    lines = out.getvalue().splitlines()
    assert lines[0] == "unhandled error on /x\\nFAKE"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"


def test_filtering_twice_changes_nothing(log: tuple[logging.Logger, io.StringIO]) -> None:
    """The edge puts the filter on uvicorn's loggers as well as on the handler, so their records pass twice."""
    logger, out = log
    logger.addFilter(RedactingFilter())
    try:
        logger.info("%s %s", "a\n\x00" + "é" * 300, "z" * 5000)
    finally:
        logger.filters.clear()
    once = printable(printable("a\n\x00" + "é" * 300) + " " + printable("z" * 5000), MAX_MESSAGE_CHARS)
    assert out.getvalue() == once + "\n"


def test_secrets_are_still_redacted(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    key = keys.new_key(False)
    secret = key.split("_", 1)[1]
    logger.info("rejected %s… on %s", key, f"/api/my-stats?api_key={key}\n")
    # A cut through a key or a bare secret must not leave a piece of it the patterns no longer recognise.
    for offset in range(MAX_ARG_CHARS - 70, MAX_ARG_CHARS):
        logger.info("path %s", "z" * offset + key)
        logger.info("path %s", "z" * offset + secret)
    assert key_leaks(key, out.getvalue()) == []
    assert out.getvalue().startswith(f"rejected {keys.display_prefix(key)[:11]}…… on /api/my-stats?api_key=…")


def test_printable_escapes_control_characters_and_caps_length() -> None:
    assert printable("/api/x\nFAKE 200") == "/api/x\\nFAKE 200"
    assert printable("/api/x\r\x00\x1b") == "/api/x\\r\\x00\\x1b"
    assert printable("/" + "z" * 10_000) == "/" + "z" * (MAX_ARG_CHARS - 1) + "…"
    assert printable("/" + "a" * 10_000) == "/aaaaaa…"  # a long hex run may be a key's secret: redacted
    assert printable("z" * 10_000, 50) == "z" * 50 + "…"
    assert printable("/api/my-stats 200") == "/api/my-stats 200"
