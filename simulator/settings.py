"""Configuration of the Anthropic Messages API simulator.

Everything comes from `SIM_*` environment variables so the dev stack and the benchmark can start the
simulator with a fault or artificial latency without code changes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from simulator.faults import parse_fault

DEFAULT_PORT = 3090


class SimulatorSettings(BaseSettings):
    """Start-up settings; `fault` uses the same grammar as the `x-sim-fault` request header."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_PORT
    fault: str = ""
    latency_ms: Annotated[int, Field(ge=0)] = 0
    log_level: str = "info"

    @field_validator("fault")
    @classmethod
    def _fault_must_parse(cls, value: str) -> str:
        """Reject a bad `SIM_FAULT` at start-up rather than on every request."""
        parse_fault(value)
        return value.strip()
