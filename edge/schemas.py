"""Request bodies, validated before any service is called. Field names follow the guide (camelCase)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from common.money import MAX_AMOUNT
from common.rate_limits import MAX_CONCURRENT as MAX_CONCURRENT_LIMIT
from common.rate_limits import MAX_REQUESTS_PER_MINUTE


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


class LimitsBody(StrictBody):
    """PUT /api/admin/users/{username}/limits. A field left out is kept; null = the service default;
    0 = no limit. Strict: whole JSON numbers only (no strings, floats or booleans)."""

    requests_per_minute: Annotated[int, Field(ge=0, le=MAX_REQUESTS_PER_MINUTE)] | None = None
    max_concurrent: Annotated[int, Field(ge=0, le=MAX_CONCURRENT_LIMIT)] | None = None


# -- generation ------------------------------------------------------------------------------------
ProjectPath = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ActKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class GenerationOptions(StrictBody):
    """Optional on every generation call: a model from the allowlist and an output cap."""

    model: ModelId | None = None
    max_tokens: Annotated[int, Field(ge=1, le=128_000)] | None = Field(None, alias="maxTokens")


class StructureBody(GenerationOptions):
    story_input: dict[str, Any] = Field(alias="storyInput")
    template: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CustomAct(StrictBody):
    key: str
    name: str
    description: str = ""


class CustomTemplate(StrictBody):
    name: str = "Custom"
    description: str = ""
    acts: list[CustomAct]


class StructureCustomBody(GenerationOptions):
    story_input: dict[str, Any] = Field(alias="storyInput")
    template: CustomTemplate = Field(alias="customTemplate")


class PlotPointsBody(GenerationOptions):
    desired_scene_count: Annotated[int, Field(ge=1, le=12)] | None = Field(None, alias="desiredSceneCount")


class ScenesBody(GenerationOptions):
    project_path: ProjectPath = Field(alias="projectPath")
    act_key: ActKey | None = Field(None, alias="actKey")
    desired_scene_count: Annotated[int, Field(ge=1, le=12)] | None = Field(None, alias="desiredSceneCount")


class SceneBody(GenerationOptions):
    pass


class DialogueBody(GenerationOptions):
    project_path: ProjectPath = Field(alias="projectPath")
    structure_key: ActKey = Field(alias="structureKey")
    scene_index: Annotated[int, Field(ge=0, le=10_000)] = Field(alias="sceneIndex")
