"""Billing service settings (env prefix BILLING_)."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.rate_limits import MAX_CONCURRENT as MAX_CONCURRENT_LIMIT
from common.rate_limits import MAX_REQUESTS_PER_MINUTE
from common.settings import DEFAULT_BILLING_PORT, CommonSettings
from services.billing.repository import LimitDefaults


class BillingSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", populate_by_name=True)

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
    #: How old a webhook's signed timestamp may be (Stripe's own default): an older replay is refused.
    stripe_webhook_tolerance_seconds: int = Field(300, ge=1, le=86400, validation_alias="STRIPE_WEBHOOK_TOLERANCE")

    @property
    def limit_defaults(self) -> LimitDefaults:
        return LimitDefaults(self.default_requests_per_minute, self.default_max_concurrent)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
