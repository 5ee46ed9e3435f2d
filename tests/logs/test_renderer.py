"""The renderer every process's lines go through, in both formats (LOG_FORMAT=json and console): stdlib
records and structlog events alike get the schema's keys, secrets redacted, request data escaped onto one
line and cut, tracebacks kept (redacted), and the request id and user bound for the request in progress."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from common import request_id as context
from common.logging import (
    MAX_ARG_CHARS,
    MAX_MESSAGE_CHARS,
    SCHEMA,
    RedactingFilter,
    configure_structlog,
    formatter,
    get_logger,
)
from services.auth import keys
from tests.helpers import key_leaks

FORMATS = ["json", "console"]
LOGGER = "test.renderer"


@pytest.fixture(params=FORMATS)
def out(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    """A logger set up as `setup_logging` sets up the root's handler (the formatter, the filter on the
    handler), in one format, writing to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter("edge", request.param))  # type: ignore[arg-type]
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(LOGGER)
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    configure_structlog()
    bound, user = context.request_id.set(None), context.user_id.set(None)
    try:
        yield request.param, buffer
    finally:
        logger.handlers.clear()
        context.request_id.reset(bound)
        context.user_id.reset(user)


def records(fmt: str, buffer: io.StringIO) -> list[str]:
    """The records written: one line each in JSON; in console a traceback's lines follow its record's."""
    return buffer.getvalue().splitlines()


def test_json_lines_have_the_schema_in_order_and_the_bound_request(out: tuple[str, io.StringIO]) -> None:
    fmt, buffer = out
    context.request_id.set("req_" + "ab" * 16)
    context.user_id.set(42)
    logging.getLogger(LOGGER).info("GET %s %d", "/api/my-stats", 200)
    get_logger(LOGGER).warning("auth.failed", reason="invalid", count=3, cost=Decimal("1.50"), flag=True)
    context.request_id.set(None)
    context.user_id.set(None)
    get_logger(LOGGER).info("usage.high_tokens", user_id=7)  # a service names the user it knows
    first, second, third = records(fmt, buffer)
    if fmt == "console":
        assert first.endswith(" INFO edge test.renderer: GET /api/my-stats 200 request_id=req_" + "ab" * 16
                              + " user_id=42")
        assert second.endswith(" WARNING edge test.renderer: auth.failed reason=invalid count=3 cost=1.50 flag=True "
                               f"request_id=req_{'ab' * 16} user_id=42")
        assert third.endswith(" INFO edge test.renderer: usage.high_tokens user_id=7")
        return
    lines = [json.loads(line) for line in (first, second, third)]
    assert [list(line)[:len(SCHEMA)] for line in lines] == [list(SCHEMA)] * 3
    assert {k: lines[0][k] for k in SCHEMA if k != "ts"} == {
        "level": "info", "service": "edge", "event": LOGGER, "message": "GET /api/my-stats 200",
        "request_id": "req_" + "ab" * 16, "user_id": 42, "logger": LOGGER}
    assert (lines[1]["event"], lines[1]["level"], lines[1]["reason"], lines[1]["count"], lines[1]["cost"],
            lines[1]["flag"]) == ("auth.failed", "warning", "invalid", 3, "1.50", True)
    assert (lines[2]["request_id"], lines[2]["user_id"]) == (None, 7)


def test_request_data_stays_on_one_line_in_messages_and_fields(out: tuple[str, io.StringIO]) -> None:
    fmt, buffer = out
    hostile = "/a\nFAKE 2026-01-01 INFO edge edge.access: GET / 200\r\x00\u2028"
    logging.getLogger(LOGGER).info("path %s", hostile)
    logging.getLogger(LOGGER).info(f"path {hostile}")  # formatted before logging
    get_logger(LOGGER).info("auth.failed", message=f"on {hostile}", path=hostile)
    text = buffer.getvalue()
    assert text.count("\n") == 3 and "\x00" not in text and "\r" not in text and "\u2028" not in text
    assert not [line for line in text.split("\n") if line.startswith("FAKE")]
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        escaped = "/a\\nFAKE 2026-01-01 INFO edge edge.access: GET / 200\\r\\x00\\u2028"
        assert [line["message"] for line in lines] == [f"path {escaped}", f"path {escaped}", f"on {escaped}"]
        assert lines[2]["path"] == escaped


def test_long_values_are_cut(out: tuple[str, io.StringIO]) -> None:
    fmt, buffer = out
    logging.getLogger(LOGGER).info("GET %s 404", "/" + "z" * 60_000)
    get_logger(LOGGER).info("q" * 500, message="m" * 60_000, path="/" + "z" * 60_000)
    first, second = records(fmt, buffer)
    arg = "/" + "z" * (MAX_ARG_CHARS - 1) + "…"
    if fmt == "json":
        one, two = json.loads(first), json.loads(second)
        assert one["message"] == f"GET {arg} 404"
        assert (two["event"], two["message"], two["path"]) == ("q" * 100 + "…", "m" * MAX_MESSAGE_CHARS + "…", arg)
    else:
        assert first.endswith(f": GET {arg} 404")
        assert second.endswith(f": {'m' * MAX_MESSAGE_CHARS}… event={'q' * 100}… path={arg}")


def test_secrets_are_redacted_wherever_they_are(out: tuple[str, io.StringIO]) -> None:
    fmt, buffer = out
    key = keys.new_key(False)
    secret = key.split("_", 1)[1]
    logging.getLogger(LOGGER).info("rejected %s on %s", key, f"/api/my-stats?api_key={key}")
    get_logger(LOGGER).warning("auth.failed", message=f"key {key}", key=key, secret=secret,
                               url="postgresql://fsg:hunter2hunter2@db/x", header=f"Bearer {secret}")
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        logging.getLogger(LOGGER).exception("stdlib %s", key)
        get_logger(LOGGER).error("structlog.failure", exc_info=True)
    text = buffer.getvalue()
    assert key_leaks(key, text) == []
    assert "hunter2" not in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["message"].startswith(f"rejected {key[:11]}… on /api/my-stats?api_key=…")
        assert [line.get("exception", "").splitlines()[-1] for line in lines[2:]] == [
            f"ValueError: bad key {key[:11]}…"] * 2


def test_a_traceback_keeps_its_lines(out: tuple[str, io.StringIO]) -> None:
    fmt, buffer = out
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger(LOGGER).exception("unhandled error on %s", "/x\nFAKE")
    if fmt == "json":
        [line] = [json.loads(line) for line in buffer.getvalue().splitlines()]
        assert line["message"] == "unhandled error on /x\\nFAKE" and line["level"] == "error"
        trace = line["exception"].splitlines()
    else:
        first, *trace = buffer.getvalue().splitlines()
        assert first.endswith(" ERROR edge test.renderer: unhandled error on /x\\nFAKE")
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "RuntimeError: boom"


def test_disabled_levels_write_nothing(out: tuple[str, io.StringIO]) -> None:
    _, buffer = out
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    logging.getLogger(LOGGER).debug("hidden %s", "x")
    get_logger(LOGGER).debug("grpc.calls", method="x")
    assert buffer.getvalue() == ""
