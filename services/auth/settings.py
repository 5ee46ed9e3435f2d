"""Auth service settings (env prefix AUTH_)."""

from pydantic_settings import SettingsConfigDict

from common.settings import DEFAULT_AUTH_PORT, CommonSettings


class AuthSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", populate_by_name=True)
    DEPLOY_REQUIRED = ("host", "database_url", "service_token")

    host: str = "127.0.0.1"
    port: int = DEFAULT_AUTH_PORT

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
