"""The model allowlist and its prices, loaded from `models.json` (data, not code)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from common.money import cost_credits
from services.generation.errors import UnknownModel

MODELS_FILE = Path(__file__).with_name("models.json")
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,99}$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    id: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """Credits for this many tokens (common.money's one rounding rule: up to 0.0001 credit)."""
        return cost_credits(input_tokens, output_tokens, self.input_usd_per_mtok, self.output_usd_per_mtok)


class PriceTable:
    def __init__(self, models: list[ModelPrice], default: str) -> None:
        self.models = {m.id: m for m in models}
        if default not in self.models:
            raise ValueError(f"default model {default!r} is not in the allowlist")
        self.default = default

    @classmethod
    def load(cls, path: Path = MODELS_FILE) -> PriceTable:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = []
        for entry in data["models"]:
            if not MODEL_ID.match(entry["id"]):
                raise ValueError(f"bad model id {entry['id']!r}")
            price_in, price_out = Decimal(entry["input_usd_per_mtok"]), Decimal(entry["output_usd_per_mtok"])
            if price_in < 0 or price_out < 0:
                raise ValueError(f"negative price for {entry['id']}")
            models.append(ModelPrice(entry["id"], price_in, price_out))
        return cls(models, data["default"])

    def resolve(self, model: str) -> ModelPrice:
        """The requested model, or the default for ""; anything off the allowlist is refused."""
        chosen = model or self.default
        price = self.models.get(chosen)
        if price is None:
            raise UnknownModel(f"Unknown model '{chosen[:100]}'; allowed: {', '.join(sorted(self.models))}")
        return price
