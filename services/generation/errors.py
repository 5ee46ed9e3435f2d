"""Generation domain errors.

    DomainError (common.errors)
    ├── InvalidGenerationInput   INVALID_ARGUMENT  malformed body, story input, custom template, sizes
    │   └── UnknownModel         INVALID_ARGUMENT  a model off the allowlist
    ├── ProjectNotFound          NOT_FOUND         unknown project, or another user's
    ├── ActNotFound              NOT_FOUND
    ├── SceneNotFound            NOT_FOUND
    ├── TemplateNotFound         NOT_FOUND
    ├── PlanOverBudget           FAILED_PRECONDITION  Execute of a plan whose worst case exceeds its hold
    └── ProjectPathTaken         ALREADY_EXISTS    (astronomically unlikely random collision)

A failed call to Claude is not an exception here: Execute answers ok=false with the provider's usage,
so the edge can void the hold and still log what the provider consumed.
"""

from common.errors import DomainError, Refusal


class InvalidGenerationInput(DomainError):
    refusal = Refusal.INVALID_INPUT
    message = "Invalid generation input"


class UnknownModel(InvalidGenerationInput):
    message = "Unknown model"


class ProjectNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Project not found"


class ActNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Act not found"


class SceneNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Scene not found"


class TemplateNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "Template not found"


class ProjectPathTaken(DomainError):
    refusal = Refusal.ALREADY_EXISTS
    message = "Project path already exists"


class PlanOverBudget(DomainError):
    refusal = Refusal.CONFLICT
    message = "The plan's worst case exceeds the credits held for it"
