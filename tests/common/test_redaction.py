"""The redaction every log handler and error body goes through covers every form a key can take."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from common.logging import redact
from services.auth import keys
from tests.helpers import key_leaks


def key_forms(key: str) -> dict[str, str]:
    secret = key.split("_", 1)[1]
    return {
        "plain": key,
        "upper": key.upper(),
        "glued-before": f"xx{key}",
        "glued-after": f"{key}zz",
        "hex-appended": f"{key}abc",
        "truncated": key[:40],
        "secret-only": secret,
        "secret-glued": f"q{secret}q",
        "url-encoded": quote(key, safe=""),
        "url-encoded-all": "".join(f"%{ord(c):02X}" if c == "_" else c for c in key),
        "query": f"/api/my-stats?api_key={key}&x=1",
        "query-encoded": f"/api/my-stats?api%5Fkey%3D{quote(key)}",
        "query-garbage": f"?API_KEY=not-a-key-{secret[:30]}",
        "header-repr": f"{{'x-api-key': '{key}'}}",
        "header-bytes": f"[(b'x-api-key', b'{key}')]",
        "json": f'{{"api_key": "{key}"}}',
        "protobuf-text": f'api_key: "{key}"',
        "path": f"/api/projects/{key}/export",
    }


@pytest.mark.parametrize("is_admin", [False, True])
@pytest.mark.parametrize("form", list(key_forms("user_" + "0" * 64)))
def test_every_form_of_a_key_is_redacted(is_admin: bool, form: str) -> None:
    key = keys.new_key(is_admin)
    text = key_forms(key)[form]
    assert key_leaks(key, redact(f"before {text} after")) == []


def test_redaction_keeps_what_operators_need() -> None:
    key = keys.new_key(False)
    assert redact(f"rejected {key}") == f"rejected {key[:11]}…"
    # Request ids (32 hex), test usernames (`user_` + 12 hex) and short prefixes stay readable.
    for readable in ("req_0123456789abcdef0123456789abcdef", "user_0123456789ab", keys.display_prefix(key),
                     "POST /api/generate-structure 200 12.3ms"):
        assert redact(readable) == readable

