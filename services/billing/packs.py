"""The credit packs on sale, kept as data (packs.json next to this module, or BILLING_PACKS_FILE).

A purchase copies its pack's credits and price when it is created, so changing the catalogue never changes
what an earlier buyer paid for or is owed.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from common.money import parse_credits

DEFAULT_PACKS_FILE = Path(__file__).with_name("packs.json")


def _credits(value: Decimal) -> Decimal:
    return parse_credits(value, allow_zero=True)


Credits = Annotated[Decimal, AfterValidator(_credits)]


class Pack(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=None, populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    name: str = Field(min_length=1, max_length=64)
    #: What the buyer gets before any bonus.
    base_credits: Credits = Field(alias="credits")
    bonus_credits: Credits = Field(Decimal(0), alias="bonusCredits")
    #: The price in the currency's minor unit (cents), as Stripe counts it.
    amount: int = Field(gt=0, le=99_999_999)
    currency: str = Field(pattern=r"^[a-z]{3}$")

    @property
    def credits(self) -> Decimal:
        """Everything the pack gives, bonus included."""
        return self.base_credits + self.bonus_credits

    @model_validator(mode="after")
    def _gives_something(self) -> Pack:
        if self.base_credits <= 0:
            raise ValueError(f"pack {self.id}: credits must be positive")
        return self


_PACKS = TypeAdapter(list[Pack])


class Catalogue:
    """The packs by id, in the order the file lists them."""

    def __init__(self, packs: list[Pack]) -> None:
        ids = [p.id for p in packs]
        if len(set(ids)) != len(ids):
            raise ValueError("pack ids must be unique")
        self.packs = packs
        self._by_id = {p.id: p for p in packs}

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        return cls(_PACKS.validate_json((path or DEFAULT_PACKS_FILE).read_bytes()))

    def get(self, pack_id: str) -> Pack | None:
        return self._by_id.get(pack_id)
