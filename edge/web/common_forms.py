"""Form fields into the REST routes' own request models: a malformed field is the API's 422."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edge.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], values: dict[str, Any]) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        fields = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "invalid")}
                  for e in exc.errors()]
        raise ApiError(422, "Invalid request", "; ".join(f"{f['field']}: {f['message']}" for f in fields),
                       fields=fields) from None


def number(text: str, field: str) -> int | float:
    """A form's number as the JSON parser would give it (the API's models refuse strings)."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ApiError(422, "Invalid request", f"{field}: must be a number",
                       fields=[{"field": field, "message": "must be a number"}]) from None
