"""Request bodies, validated before any service is called. Field names follow the guide (camelCase)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from common.money import MAX_AMOUNT


def _json_number(value: Any) -> Any:
    """Credits must be JSON numbers: refuse strings and booleans; read floats by their JSON text."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


Credits = Annotated[Decimal, BeforeValidator(_json_number), Field(le=MAX_AMOUNT, decimal_places=4)]
Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{3,64}$")]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
]


class StrictBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class CreateUserBody(StrictBody):
    username: Username
    email: Email
    initial_credits: Annotated[Credits, Field(ge=0)] = Field(Decimal(0), alias="initialCredits")


class GrantCreditsBody(StrictBody):
    username: Username
    credits: Annotated[Credits, Field(gt=0)]
    notes: Annotated[str, StringConstraints(max_length=1000)] = ""
    type: Literal["grant", "purchase", "refund"] = "grant"
