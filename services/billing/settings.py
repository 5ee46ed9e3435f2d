"""Billing service settings (env prefix BILLING_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import DEFAULT_BILLING_PORT, CommonSettings


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

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
