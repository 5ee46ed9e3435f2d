"""What the routes answer, declared for the OpenAPI schema (clients, and the schema-conformance fuzz test).

These models are documentation only: routes keep returning `DecimalJSONResponse` objects, which FastAPI
sends as they are (it validates and serializes a `response_model` only for plain return values), so
nothing here runs per request. Credits are Decimals rendered as JSON numbers, hence `Money`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from services.generation.project import Project as GenerationProject

Money = Annotated[Decimal, WithJsonSchema({"type": "number"})]


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# -- errors ---------------------------------------------------------------------------------------------
class ErrorBody(_Doc):
    """Every error: a short fixed `error`, usually a `message`, sometimes more (e.g. `required`)."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str | None = None


class FieldError(_Doc):
    field: str
    message: str


class ValidationErrorBody(ErrorBody):
    fields: list[FieldError]


def _error(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


#: Errors any route may answer ("default" covers the service-side ones: 404, 409, 429, 502-504).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed JSON body, or input a service refused"),
    413: _error("Request body larger than EDGE_MAX_BODY_BYTES"),
    422: _error("Invalid parameters or body; `fields` names each problem", ValidationErrorBody),
    "default": _error("Any other error, same shape"),
}
KEY_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 401: _error("API key missing or invalid")}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {**KEY_ERRORS, 403: _error("Not an admin key")}
METERED_ERRORS: dict[int | str, dict[str, Any]] = {
    **KEY_ERRORS, 402: _error("Insufficient credits; `remaining` and `required` say how many"),
}


# -- health ---------------------------------------------------------------------------------------------
class Liveness(_Doc):
    status: str


class Readiness(_Doc):
    status: str
    services: dict[str, str]
    key_cache: str


# -- accounts -------------------------------------------------------------------------------------------
class NewUser(_Doc):
    id: int
    username: str
    email: str
    api_key: str
    credits_remaining: Money


class CreatedUser(_Doc):
    message: str
    user: NewUser


class Balance(_Doc):
    username: str
    credits_remaining: Money | None = Field(description="null for an unlimited (admin) account; below zero "
                                                        "while the account owes credits")
    credits_held: Money
    credits_owed: Money = Field(description="credits a refunded or disputed purchase took back after they were "
                                            "spent; metered calls are refused until they are paid")
    total_credits_purchased: Money
    unlimited: bool


class Granted(_Doc):
    message: str
    user: Balance
    credits_granted: int
    transaction_id: int
    replayed: bool


class Usage(_Doc):
    total_requests: int
    total_tokens: int
    total_cost: Money
    successful_requests: int
    avg_tokens_per_request: int


class EndpointUsage(_Doc):
    endpoint: str
    count: int
    total_cost: Money


class UsageStats(_Doc):
    user: Balance
    usage: Usage
    recent_usage: list[EndpointUsage] = Field(alias="recentUsage")


class ListedUser(_Doc):
    id: int
    username: str
    email: str
    is_admin: bool
    disabled: bool
    api_key_prefix: str
    created_at: str
    credits_remaining: Money | None
    credits_held: Money
    credits_owed: Money
    total_credits_purchased: Money
    unlimited: bool
    total_requests: int
    total_tokens: int
    total_cost: Money


class UserPage(_Doc):
    users: list[ListedUser]
    next_after: int | None


class RotatedKey(_Doc):
    message: str
    username: str
    api_key: str


class EffectiveLimits(_Doc):
    requests_per_minute: int
    max_concurrent: int


class Limits(_Doc):
    """Stored limits (null = the service default) and the effective ones (0 = no limit)."""

    message: str | None = None
    username: str
    requests_per_minute: int | None
    max_concurrent: int | None
    effective: EffectiveLimits
    exempt: bool
    in_flight: int


class AlertSettings(_Doc):
    """GET|PUT /api/my-alerts: the low-credit alert's threshold (the caller's own, null = the default), where
    it is sent, and whether it is armed. `webhookSecret` only in the answer that issued it."""

    message: str | None = None
    username: str
    threshold: Money | None = Field(description="your own threshold in credits; null = the default")
    default_threshold: Money = Field(alias="defaultThreshold")
    effective_threshold: Money = Field(alias="effectiveThreshold", description="the threshold in force; 0 = off")
    webhook_url: str | None = Field(alias="webhookUrl")
    webhook_secret: str | None = Field(
        None, alias="webhookSecret",
        description="the webhook's signing secret: only in the answer that set a first URL or rotated it")
    balance: Money = Field(description="what the alert watches: credits owned (available + held)")
    armed: bool = Field(description="the next drop below the threshold sends an alert")
    unlimited: bool = Field(description="unlimited accounts never alert")


class UserState(_Doc):
    message: str
    username: str
    disabled: bool


class Transaction(_Doc):
    id: int
    transaction_type: str
    credits_amount: Money
    balance_after: Money
    notes: str | None
    created_by: str | None
    hold_id: str | None
    purchase_id: str | None = Field(description="a purchase's or clawback's row: the purchase")
    stripe_event_id: str | None = Field(description="and the Stripe event that moved it")
    created_at: str


class TransactionPage(_Doc):
    transactions: list[Transaction]
    next_before: int | None


# -- purchases ------------------------------------------------------------------------------------------
class CreditPack(_Doc):
    id: str
    name: str
    credits: Money = Field(description="credits the pack gives, bonus included")
    bonus_credits: Money = Field(alias="bonusCredits")
    amount: int = Field(description="the price in the currency's minor unit (cents)")
    currency: str


class CreditPacks(_Doc):
    packs: list[CreditPack]
    publishable_key: str | None = Field(alias="publishableKey", description="Stripe.js's key; null when unset")
    test_mode: bool = Field(alias="testMode", description="the local fake Stripe: pay with `testCard`; no checkout")


class StartedPurchase(_Doc):
    purchase_id: str = Field(alias="purchaseId")
    client_secret: str = Field(alias="clientSecret", description="for Stripe.js to confirm the payment")
    amount: int
    currency: str
    credits: Money
    pack: str
    payment_status: str = Field(alias="paymentStatus", description="the PaymentIntent's status")
    state: str
    checkout_url: str | None = Field(alias="checkoutUrl", description="hosted checkout: send the buyer here")


class Purchase(_Doc):
    purchase_id: str = Field(alias="purchaseId")
    pack: str
    credits: Money
    amount: int
    currency: str
    state: str = Field(description="pending | failed | succeeded | partially_refunded | refunded | disputed | "
                                   "mismatch")
    credited: Money = Field(description="net credits the purchase has added so far")
    refunded_amount: int = Field(alias="refundedAmount")
    disputed_amount: int = Field(alias="disputedAmount")
    failure_message: str | None = Field(alias="failureMessage")
    payment_intent_id: str | None = Field(alias="paymentIntentId")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class PurchasePage(_Doc):
    purchases: list[Purchase]
    next_before: int | None = Field(alias="nextBefore")


class StripeEventReceived(_Doc):
    received: bool
    event_id: str = Field(alias="eventId")
    outcome: str = Field(description="applied | duplicate | ignored | not_ours | conflict")


# -- templates, models, projects --------------------------------------------------------------------------
class TemplateAct(_Doc):
    key: str
    name: str
    description: str


class Template(_Doc):
    id: str
    name: str
    description: str
    acts: list[TemplateAct]


class Templates(_Doc):
    templates: list[Template]


class Model(_Doc):
    id: str
    input_usd_per_mtok: str
    output_usd_per_mtok: str
    default: bool


class Models(_Doc):
    models: list[Model]


class ProjectSummary(_Doc):
    project_path: str = Field(alias="projectPath")
    title: str
    template: str
    created_at: str
    updated_at: str


class Projects(_Doc):
    projects: list[ProjectSummary]


#: A project as GET /api/projects/{projectPath} answers it: the generation service's own model, so the
#: documented schema is the one the document is built from.
Project = GenerationProject


class DeletedProject(_Doc):
    message: str
    project_path: str = Field(alias="projectPath")


EXPORT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The project as a Fountain screenplay, plain text, or JSON (by `format`)",
        "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
    },
}


# -- metered generation --------------------------------------------------------------------------------
class GenerationUsage(_Doc):
    input_tokens: int
    output_tokens: int
    model: str
    credits_charged: Money
    credits_remaining: Money | None


class Generated(_Doc):
    """The endpoint's result (structure, plotPoints, scenes, scene or dialogue), plus usage and ids."""

    model_config = ConfigDict(extra="allow")
    project_path: str = Field(alias="projectPath")
    usage: GenerationUsage
    request_id: str = Field(alias="requestId")


# -- bulk import and export -----------------------------------------------------------------------------
class ImportedRow(_Doc):
    row: int = Field(description="the row's number in the file; the header is row 1")
    username: str
    outcome: str = Field(description="created | exists | rejected | not_processed")
    reason: str
    credits_granted: Money = Field(description="initial credits granted by this run (or, in a dry run, that "
                                               "would be)")
    api_key: str | None = Field(None, description="a created user's API key: shown here once, nowhere else")


class ImportSummary(_Doc):
    rows: int
    created: int
    exists: int
    rejected: int
    not_processed: int
    credits_granted: Money


class ImportReport(_Doc):
    dry_run: bool
    complete: bool
    failure: str | None = None
    summary: ImportSummary
    rows: list[ImportedRow]


class FileProblem(_Doc):
    row: int = Field(description="0 for the file as a whole")
    field: str
    message: str


class ImportRefusedBody(ErrorBody):
    """A refused file names its problems; a refused query parameter (dry_run) its fields, as every 422 does."""

    problems: list[FileProblem] = []
    fields: list[FieldError] | None = None


# -- usage reports --------------------------------------------------------------------------------------
class UsageGroup(_Doc):
    name: str = Field(description="the day (YYYY-MM-DD, UTC), endpoint or model")
    requests: int
    failed: int
    tokens: int
    credits: Money = Field(description="credits charged")


class TopUser(_Doc):
    user_id: int = Field(alias="userId")
    username: str | None
    requests: int
    failed: int
    tokens: int
    credits: Money


class UsageReport(_Doc):
    days: int
    per_day: list[UsageGroup] = Field(alias="perDay")
    by_endpoint: list[UsageGroup] = Field(alias="byEndpoint")
    by_model: list[UsageGroup] = Field(alias="byModel")


class SystemReport(UsageReport):
    top_users: list[TopUser] = Field(alias="topUsers")


class Call(_Doc):
    id: int
    user_id: int = Field(alias="userId")
    created_at: str
    request_id: str = Field(alias="requestId")
    endpoint: str
    model: str | None
    project_path: str | None = Field(alias="projectPath")
    input_tokens: int
    output_tokens: int
    credits_cost: Money
    success: bool
    error_message: str | None
    latency_ms: int | None


class CallPage(_Doc):
    calls: list[Call]
    next_before: int | None


class Quote(_Doc):
    endpoint: str
    model: str
    minimum: Money = Field(description="the endpoint's price floor")
    worst_case: Money = Field(alias="worstCase", description="the most this call could cost")
    hold: Money = Field(description="what the call would hold: the larger of the two")
    credits_remaining: Money | None = Field(description="the caller's available credits now (null: unlimited)")
