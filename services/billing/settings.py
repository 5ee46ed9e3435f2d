"""Billing service settings (env prefix BILLING_)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.money import InvalidAmount, parse_credits
from common.rate_limits import MAX_CONCURRENT as MAX_CONCURRENT_LIMIT
from common.rate_limits import MAX_REQUESTS_PER_MINUTE
from common.settings import DEFAULT_AUTH_PORT, DEFAULT_BILLING_PORT, CommonSettings
from services.billing.alerts.mail import SmtpConfig
from services.billing.alerts.policy import RetryPolicy
from services.billing.repository import LimitDefaults


class BillingSettings(CommonSettings):
    # hide_input_in_errors: a refused SMTP_URL (or DATABASE_URL) must not be echoed, password and all.
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)
    DEPLOY_REQUIRED = ("host", "database_url", "service_token", "auth_addr", "stripe_secret_key",
                       "stripe_webhook_secret", "stripe_publishable_key", "smtp_url")

    host: str = "127.0.0.1"
    port: int = DEFAULT_BILLING_PORT
    #: A hold lives this long unless the caller asks otherwise; longer than any generation call.
    hold_ttl_seconds: int = Field(600, ge=1, le=86400)
    #: How often the sweeper looks for expired holds.
    sweep_interval_seconds: float = Field(5.0, gt=0)
    #: Usage stats' `recentUsage` covers this many days.
    recent_usage_days: int = Field(30, ge=1)
    #: Per-user rate limits for accounts without their own (`fsg` admin API sets those); 0 = no limit.
    #: Metered calls per minute, as a GCRA whose burst is one minute's worth.
    default_requests_per_minute: int = Field(60, ge=0, le=MAX_REQUESTS_PER_MINUTE)
    #: Metered calls in flight (pending holds) at once.
    default_max_concurrent: int = Field(5, ge=0, le=MAX_CONCURRENT_LIMIT)
    #: An Idempotency-Key's record (its holds and the result a replay answers) is kept this long; a key
    #: reused later starts a new request.
    idempotency_retention_hours: int = Field(24, ge=1)
    #: The credit packs on sale (a JSON list; services/billing/packs.json when unset).
    packs_file: Path | None = None
    #: Stripe: the secret key (unset: purchases are refused, unless `make run` started localstripe for you),
    #: the webhook endpoint's signing secret, the publishable key clients need, and another API address
    #: (localstripe's) instead of Stripe's.
    stripe_secret_key: SecretStr | None = Field(None, validation_alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, validation_alias="STRIPE_WEBHOOK_SECRET")
    stripe_publishable_key: str = Field("", validation_alias="STRIPE_PUBLISHABLE_KEY")
    stripe_api_base: str | None = Field(None, validation_alias="STRIPE_API_BASE")
    #: Accept test card numbers in purchases (billing makes the payment method itself): only ever against the
    #: local fake Stripe, which `make run` sets this for; refused with a live key whatever this says.
    stripe_test_cards: bool = Field(False, validation_alias="STRIPE_TEST_CARDS")
    #: How old a webhook's signed timestamp may be (Stripe's own default): an older replay is refused.
    stripe_webhook_tolerance_seconds: int = Field(300, ge=1, le=86400, validation_alias="STRIPE_WEBHOOK_TOLERANCE")

    # -- low-credit alerts (services/billing/alerts/) --------------------------------------------------------
    #: The threshold, in credits, of users who set none (0 = no low-credit alerts for them). Written to the
    #: database when billing starts (the alert trigger reads it there): keep it the same on every replica.
    alert_default_threshold: Decimal = Decimal(100)
    #: How often the dispatcher looks for alerts to deliver.
    alert_poll_seconds: float = Field(1.0, gt=0)
    #: Attempts per delivery (mail or webhook) before it becomes a dead letter (`fsg-billing alerts`).
    alert_max_attempts: int = Field(8, ge=1, le=100)
    #: Backoff between attempts: base × 2^(attempt-1), at most max, each with random jitter (half to all of it).
    alert_retry_base_seconds: float = Field(5.0, gt=0)
    alert_retry_max_seconds: float = Field(900.0, gt=0)
    alert_webhook_timeout_seconds: float = Field(10.0, gt=0)
    alert_smtp_timeout_seconds: float = Field(30.0, gt=0)
    #: A claimed delivery is left to its dispatcher this long (then another replica may take it over: a
    #: dispatcher that died mid-delivery delays an alert by at most this).
    alert_lease_seconds: float = Field(300.0, gt=0)
    alert_mail_from: str = "Film Script Generator <alerts@localhost>"
    #: Tests only (honoured with FSG_FAULT_INJECTION): `crash_before_delivery` ends the process after the
    #: dispatcher claimed deliveries and before it sends them; `stall` makes it claim nothing.
    alert_fault: Literal["", "crash_before_delivery", "stall"] = ""
    #: Where auth is: alert mails go to the address auth keeps for the user.
    auth_addr: str = Field(f"127.0.0.1:{DEFAULT_AUTH_PORT}", validation_alias="AUTH_ADDR")
    #: The mail server: smtp://[user:password@]host[:port][?starttls=true] or smtps://… (TLS from the start).
    #: Unset: alert mails are not sent (recorded as skipped); `make run` starts a local sink and sets it.
    smtp_url: SecretStr | None = Field(None, validation_alias="SMTP_URL")

    @field_validator("alert_default_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: object) -> Decimal:
        try:
            return parse_credits(str(value), allow_zero=True)
        except InvalidAmount as exc:
            raise ValueError(f"BILLING_ALERT_DEFAULT_THRESHOLD: {exc}") from None

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _smtp_url(cls, value: object) -> object:
        """An empty SMTP_URL (docker-compose's `${SMTP_URL:-}`) is unset; a malformed one refuses to start,
        with a message that never echoes it (it may hold a password)."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or text == "":
            return None
        if isinstance(text, str):
            SmtpConfig.parse(text)
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Self:
        longest = max(self.alert_webhook_timeout_seconds, 3 * self.alert_smtp_timeout_seconds)
        if self.alert_lease_seconds <= longest:
            raise ValueError(f"BILLING_ALERT_LEASE_SECONDS must be longer than a delivery may take ({longest:g} s)")
        return self

    @property
    def limit_defaults(self) -> LimitDefaults:
        return LimitDefaults(self.default_requests_per_minute, self.default_max_concurrent)

    @property
    def smtp(self) -> SmtpConfig | None:
        return SmtpConfig.parse(self.smtp_url.get_secret_value()) if self.smtp_url is not None else None

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.alert_max_attempts, self.alert_retry_base_seconds, self.alert_retry_max_seconds)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
