"""Generation service settings (env prefix GENERATION_; Anthropic's own names unprefixed)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import DEFAULT_GENERATION_PORT, CommonSettings
from services.generation.retry import RetryPolicy


class GenerationSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATION_", extra="ignore", populate_by_name=True)
    DEPLOY_REQUIRED = ("host", "database_url", "service_token", "anthropic_api_key")

    host: str = "127.0.0.1"
    port: int = DEFAULT_GENERATION_PORT
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, validation_alias="ANTHROPIC_BASE_URL")
    #: Set by the launcher when it points us at the local simulator; enables per-request fault injection.
    simulated: bool = False
    #: Per attempt (cut further to what is left of the retry budget).
    anthropic_timeout_seconds: float = Field(50.0, gt=0)
    # Our one retry policy for Claude calls (retry.py; the SDK's own retries are off). Keep
    # retry_budget_seconds below the edge's EDGE_GENERATION_TIMEOUT_SECONDS (default 180) with room to save
    # the result (defaults: 120 s budget, 60 s to spare), so the user gets our clear 502/503/504 rather than
    # the edge's deadline.
    #: Tries per call, the first included (1 = no retries).
    retry_max_attempts: int = Field(3, ge=1, le=10)
    #: Total time for all attempts and the waits between them.
    retry_budget_seconds: float = Field(120.0, gt=0)
    #: Backoff without a retry-after: base·2^(n-1) plus up to base of jitter, capped at retry_max_delay_seconds.
    retry_base_delay_seconds: float = Field(0.5, ge=0)
    retry_max_delay_seconds: float = Field(8.0, ge=0)
    max_tokens_cap: int = Field(8192, ge=1, le=128_000)
    #: How often results staged under a voided or expired hold (never part of a project) are deleted.
    cleanup_interval_seconds: float = Field(60.0, gt=0)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts, budget_seconds=self.retry_budget_seconds,
            attempt_timeout_seconds=self.anthropic_timeout_seconds, base_delay_seconds=self.retry_base_delay_seconds,
            max_delay_seconds=self.retry_max_delay_seconds,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
