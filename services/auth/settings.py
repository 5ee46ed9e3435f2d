"""Auth service settings (env prefix AUTH_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import DEFAULT_AUTH_PORT, CommonSettings


class AuthSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", populate_by_name=True)
    DEPLOY_REQUIRED = ("host", "database_url", "service_token")

    host: str = "127.0.0.1"
    port: int = DEFAULT_AUTH_PORT
    #: A web session's absolute lifetime (AUTH_SESSION_LIFETIME_SECONDS): after it the browser signs in again.
    session_lifetime_seconds: float = Field(12 * 3600, gt=0)
    #: A web session unused this long ends (AUTH_SESSION_IDLE_SECONDS).
    session_idle_seconds: float = Field(3600, gt=0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
