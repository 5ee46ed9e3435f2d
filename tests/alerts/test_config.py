"""The pieces of alert delivery that need no stack: SMTP_URL (never echoed, password and all), the retry
policy's backoff bounds, and the webhook URL rule."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from common.webhook_url import InvalidWebhookUrl, check_webhook_url
from services.billing.alerts.mail import InvalidSmtpUrl, SmtpConfig
from services.billing.alerts.policy import RetryPolicy
from services.billing.settings import BillingSettings


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.test", ("mail.example.test", 25, "plain", "", "")),
    ("smtp://mail.example.test?starttls=true", ("mail.example.test", 587, "starttls", "", "")),
    ("smtp://ann:p%40ss%3Aword@mail.example.test:2525?starttls=false",
     ("mail.example.test", 2525, "plain", "ann", "p@ss:word")),
    ("smtps://ann:pw@mail.example.test", ("mail.example.test", 465, "tls", "ann", "pw")),
])
def test_smtp_urls(url: str, expected: tuple[str, int, str, str, str]) -> None:
    config = SmtpConfig.parse(url)
    assert (config.host, config.port, config.security, config.username, config.password) == expected
    assert config.password not in repr(config) or not config.password
    if config.password:
        assert config.password not in config.display and "****" in config.display


@pytest.mark.parametrize("url", ["http://ann:hunter22@mail.example.test", "smtp://", "smtp://h?starttls=maybe",
                                 "smtp://h?tls=1", "smtp://ann:hunter22@h:99999"])
def test_a_bad_smtp_url_is_refused_without_echoing_it(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidSmtpUrl) as refused:
        SmtpConfig.parse(url)
    assert "hunter22" not in str(refused.value)
    monkeypatch.setenv("SMTP_URL", url)
    with pytest.raises(ValidationError) as invalid:
        BillingSettings()
    assert "hunter22" not in str(invalid.value)


def test_an_empty_smtp_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_URL", "")
    assert BillingSettings().smtp is None


def test_the_lease_must_outlast_an_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_ALERT_LEASE_SECONDS", "20")
    with pytest.raises(ValidationError, match="LEASE"):
        BillingSettings()


def test_backoff_doubles_with_jitter_up_to_its_cap_then_the_delivery_is_dead() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=2, max_seconds=10)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 10), (40, 10)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one value
    assert [policy.exhausted(n) for n in (1, 4, 5, 6)] == [False, False, True, True]


@pytest.mark.parametrize("url", ["https://hooks.example.test/x?a=1", "http://localhost:8000/h", "http://127.0.0.9/h",
                                 "http://[::1]:9/h", "http://app.localhost/h", "https://93.184.215.14/h",
                                 "https://127.0.0.1:8443/h"])
def test_webhook_urls_allowed(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize("url", ["http://10.0.0.1/h", "http://localhost.example.test/h", "ws://localhost/h",
                                 "https:///h", "https://h/\x00", "https://hé.test/", "//hooks.example.test/x",
                                 "https://10.0.0.1/h", "https://169.254.169.254/latest/meta-data",
                                 "https://[fd00::1]/h", "https://0.0.0.0/h", "https://192.168.1.1/h"])
def test_webhook_urls_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url(url)
