"""Generation service settings (env prefix GENERATION_; Anthropic's own names unprefixed)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import DEFAULT_GENERATION_PORT, CommonSettings


class GenerationSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATION_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = DEFAULT_GENERATION_PORT
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, validation_alias="ANTHROPIC_BASE_URL")
    #: Set by the launcher when it points us at the local simulator; enables per-request fault injection.
    simulated: bool = False
    #: Per attempt; with retries this must stay under the edge's generation deadline.
    anthropic_timeout_seconds: float = Field(50.0, gt=0)
    anthropic_max_retries: int = Field(2, ge=0, le=5)
    max_tokens_cap: int = Field(8192, ge=1, le=128_000)
    #: Idempotency-Key records are kept this long; a key reused later starts a new request.
    idempotency_retention_hours: int = Field(24, ge=1)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
