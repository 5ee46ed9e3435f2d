"""Request bodies, validated before any service is called. Field names follow the guide (camelCase)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from common.money import MAX_AMOUNT, InvalidAmount, parse_credits
from common.rate_limits import MAX_CONCURRENT as MAX_CONCURRENT_LIMIT
from common.rate_limits import MAX_REQUESTS_PER_MINUTE
from common.user_fields import USERNAME_PATTERN, Email, Username
from common.webhook_url import MAX_LENGTH as MAX_WEBHOOK_URL_LENGTH
from common.webhook_url import InvalidWebhookUrl, check_webhook_url
from edge.request_json import JsonFloat

#: Ids are int64 in the services; a larger cursor in a query string is a 422, not a protobuf error.
MAX_ID = 2**63 - 1
#: The most credits one grant (or a new user's initial credits) may carry.
MAX_GRANT_CREDITS = int(MAX_AMOUNT)


def _whole_credits(value: Any) -> Any:
    """Granted credits are whole credits (1 credit = 1 cent) given as a JSON number.

    Strings and booleans are refused. A number written with a fraction or exponent is accepted when its
    JSON text is exactly a whole number (`10.0`, `1e3`): JSON and JSON Schema do not tell 10.0 from 10,
    and some clients (Python, Java) write whole floats that way. It is judged by the text the client sent,
    not the float it parses to, so `10.0000000000000001` is refused rather than silently read as 10.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number of credits (a JSON integer)")
    if isinstance(value, float):
        exact = Decimal(value.text if isinstance(value, JsonFloat) else repr(value))
        if not exact.is_finite() or exact != exact.to_integral_value():
            raise ValueError("must be a whole number of credits (1 credit = 1 cent)")
        if abs(exact) > 10 * MAX_GRANT_CREDITS:
            raise ValueError(f"must be at most {MAX_GRANT_CREDITS}")
        return int(exact)
    return value


# The bounds come before the validator so that they apply to its int result and show in the JSON schema.
InitialCredits = Annotated[int, Field(ge=0, le=MAX_GRANT_CREDITS), BeforeValidator(_whole_credits)]
GrantedCredits = Annotated[int, Field(gt=0, le=MAX_GRANT_CREDITS), BeforeValidator(_whole_credits)]
#: A username in a URL path: malformed ones (SQL metacharacters, unicode, NUL, overlong) are a 422 here.
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN)]
#: A keyset page's cursor: the id the previous page answered as its next cursor; 0 (or absent) for the first.
Cursor = Annotated[int, Query(ge=0, le=MAX_ID, description="keyset cursor from the previous page; 0 for the first")]


class StrictBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class CreateUserBody(StrictBody):
    username: Username
    email: Email
    initial_credits: InitialCredits = Field(0, alias="initialCredits")


class GrantCreditsBody(StrictBody):
    username: Username
    credits: GrantedCredits
    notes: Annotated[str, StringConstraints(max_length=1000)] = ""
    type: Literal["grant", "purchase", "refund"] = "grant"


class LimitsBody(StrictBody):
    """PUT /api/admin/users/{username}/limits. A field left out is kept; null = the service default;
    0 = no limit. Strict: whole JSON numbers only (no strings, floats or booleans)."""

    requests_per_minute: Annotated[int, Field(ge=0, le=MAX_REQUESTS_PER_MINUTE)] | None = None
    max_concurrent: Annotated[int, Field(ge=0, le=MAX_CONCURRENT_LIMIT)] | None = None


class CheckoutBody(StrictBody):
    success_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(alias="successUrl")
    cancel_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(alias="cancelUrl")


class PurchaseBody(StrictBody):
    """POST /api/purchases: a pack id from /api/credit-packs and at most one way to pay now: a Stripe
    PaymentMethod id collected by Stripe.js (confirmed server side), a test card number (the local fake Stripe
    only), or Stripe's hosted checkout (answers `checkoutUrl`). With none, the client confirms with
    `clientSecret`. Billing checks which ways this server takes."""

    pack: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    payment_method: Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,252}$")] | None = Field(
        None, alias="paymentMethod")
    test_card: Annotated[str, StringConstraints(pattern=r"^[0-9 ]{12,23}$")] | None = Field(None, alias="testCard")
    checkout: CheckoutBody | None = None


def _exact_credits(value: Any) -> Decimal:
    """A credit amount (an alert threshold) as a JSON number, read exactly from the text the client sent (never
    through a float): finite, >= 0, at most 4 decimal places (1/100 of a cent), at most MAX_AMOUNT. Strings and
    booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number of credits")
    text = value.text if isinstance(value, JsonFloat) else repr(value)
    try:
        return parse_credits(text, allow_zero=True)
    except InvalidAmount as exc:
        raise ValueError(str(exc)) from None


def _webhook_url(value: Any) -> Any:
    if isinstance(value, str):
        try:
            check_webhook_url(value)
        except InvalidWebhookUrl as exc:
            raise ValueError(str(exc)) from None
    return value


Threshold = Annotated[Decimal, BeforeValidator(_exact_credits),
                      WithJsonSchema({"type": "number", "minimum": 0, "maximum": int(MAX_AMOUNT)})]
WebhookUrl = Annotated[str, StringConstraints(max_length=MAX_WEBHOOK_URL_LENGTH), AfterValidator(_webhook_url)]


class AlertsBody(StrictBody):
    """PUT /api/my-alerts. A field left out is kept; `threshold: null` = the default, 0 = no low-credit alerts;
    `webhookUrl: null` removes the webhook (and forgets its secret); `rotateSecret: true` issues a new one."""

    threshold: Threshold | None = None
    webhook_url: WebhookUrl | None = Field(None, alias="webhookUrl")
    rotate_secret: bool = Field(False, alias="rotateSecret")


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


class CharactersBody(GenerationOptions):
    project_path: ProjectPath = Field(alias="projectPath")
