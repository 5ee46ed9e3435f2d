"""Request data cannot forge or flood the edge's log: a key or a path carrying a newline, a CR or a NUL is
written escaped on its own line, and a 60 KB path is cut, in every line that quotes it (the rejected-key
line as well as the access log). Read from a real edge process's log file, at LOG_LEVEL=INFO so the
rejected-key lines are there to check."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from common.logging import MAX_ARG_CHARS, MAX_MESSAGE_CHARS
from tests.stack import Stack

#: `2025-01-01 12:00:00,000 WARNING edge uvicorn.error: ` and the like, with room to spare.
LINE_PREFIX_CHARS = 120
#: Not hex: a long run of hex digits would be redacted as a possible key secret, and cut short by that.
LONG_PATH = "/api/projects/" + "z" * 60_000

#: (URL as sent, the text the rejected-key line must show for it): keys and paths with a newline, CR or NUL.
HOSTILE = [
    ("/api/my-stats?api_key=a%0aFAKE", "rejected API key a\\nFAKE… on /api/my-stats"),
    ("/api/my-stats?api_key=a%00%0d%0aFAKE", "rejected API key a\\x00\\r\\nFAKE… on /api/my-stats"),
    ("/api/projects/x%00%1bFAKE?api_key=bad", "rejected API key bad… on /api/projects/x\\x00\\x1bFAKE"),
]


@pytest.fixture(scope="module")
def edge_log(stack: Stack) -> Iterator[str]:
    """An INFO-level edge replica's whole log after the hostile requests (read once it has stopped, so the
    access-log lines written after each response are in it)."""
    with stack.replica("edge-log-forging", "edge", {"LOG_LEVEL": "INFO"}) as url, httpx.Client(
            base_url=url, timeout=30) as http:
        for path, _ in HOSTILE:
            assert http.get(path).status_code == 401, path
        assert http.get(LONG_PATH, params={"api_key": "bad"}).status_code == 401
    yield stack.log("edge-log-forging")


def test_a_newline_cr_or_nul_in_a_key_or_path_is_escaped(edge_log: str) -> None:
    lines = edge_log.split("\n")
    assert not [line for line in lines if line.startswith("FAKE")]
    assert "\x00" not in edge_log and "\r" not in edge_log
    for _, shown in HOSTILE:
        # The message, then the `auth.failed` event's fields (LOG_FORMAT=console, as the test stack runs).
        assert [line for line in lines if f" edge.security: {shown} event=auth.failed " in line], shown


def test_a_60kb_path_is_cut_in_every_line(edge_log: str) -> None:
    lines = edge_log.split("\n")
    assert max(map(len, lines)) <= LINE_PREFIX_CHARS + MAX_MESSAGE_CHARS + 1
    quoting = [line for line in lines if "/api/projects/zzzz" in line]
    assert len(quoting) == 2  # the rejected-key line and the access-log line
    for line in quoting:
        assert f"{'z' * (MAX_ARG_CHARS - len('/api/projects/'))}…" in line
        assert len(line) <= LINE_PREFIX_CHARS + 2 * MAX_ARG_CHARS
