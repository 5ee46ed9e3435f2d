"""API key format, hashing and the log redaction that keeps keys out of logs."""

from __future__ import annotations

import hashlib
import logging

import pytest

from common.logging import RedactingFilter, redact
from services.auth import keys


@pytest.mark.parametrize("is_admin", [True, False])
def test_new_keys_have_the_documented_format(is_admin: bool) -> None:
    key = keys.new_key(is_admin)
    assert keys.looks_like_key(key)
    assert key.startswith("admin_" if is_admin else "user_")
    assert len(key.split("_", 1)[1]) == 64
    assert len({keys.new_key(is_admin) for _ in range(100)}) == 100


def test_only_a_hash_and_a_short_prefix_are_derived() -> None:
    key = keys.new_key(False)
    assert keys.key_hash(key) == hashlib.sha256(key.encode()).digest()
    prefix = keys.display_prefix(key)
    assert key.startswith(prefix) and len(prefix) == len("user_") + 8


@pytest.mark.parametrize("bad", ["", "user_", "user_" + "g" * 64, "user_" + "a" * 63, "root_" + "a" * 64,
                                 "USER_" + "a" * 64, "user_" + "a" * 64 + "\n"])
def test_malformed_keys_are_rejected_without_a_lookup(bad: str) -> None:
    assert not keys.looks_like_key(bad)


def test_redaction_removes_keys_passwords_and_provider_keys() -> None:
    key = keys.new_key(True)
    text = redact(f"key={key} url=postgresql://u:s3cret@h:5/db?x api_key={key}&y sk-ant-abc123456")
    assert key not in text and "s3cret" not in text and "abc123456" not in text
    assert "postgresql://u:****@h:5/db" in text


def test_logging_filter_redacts_arguments(caplog: pytest.LogCaptureFixture) -> None:
    key = keys.new_key(False)
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("validating %s", key)
    assert key not in caplog.text and keys.display_prefix(key)[:11] in caplog.text
