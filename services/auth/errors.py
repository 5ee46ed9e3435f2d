"""Auth domain errors.

    DomainError (common.errors)
    ├── UserNotFound                NOT_FOUND
    ├── UsernameTaken               ALREADY_EXISTS
    ├── EmailTaken                  ALREADY_EXISTS
    ├── InvalidUserInput            INVALID_ARGUMENT
    └── LastEnabledAdmin            FAILED_PRECONDITION
        ├── CannotDisableLastAdmin
        └── CannotRotateLastAdmin
"""

from common.errors import DomainError, Refusal


class UserNotFound(DomainError):
    refusal = Refusal.NOT_FOUND
    message = "User not found"


class UsernameTaken(DomainError):
    refusal = Refusal.ALREADY_EXISTS
    message = "Username already exists"


class EmailTaken(DomainError):
    refusal = Refusal.ALREADY_EXISTS
    message = "Email already exists"


class InvalidUserInput(DomainError):
    refusal = Refusal.INVALID_INPUT
    message = "Invalid user input"


class LastEnabledAdmin(DomainError):
    """The change would leave no enabled admin holding a key, and only the host could get the API back."""

    refusal = Refusal.LAST_ENABLED_ADMIN
    message = "The last enabled admin cannot be changed this way"


class CannotDisableLastAdmin(LastEnabledAdmin):
    message = "Cannot disable the last enabled admin"


class CannotRotateLastAdmin(LastEnabledAdmin):
    """Over the API the new key exists only in the response body: lose that and every admin is locked out."""

    message = ("Cannot rotate the key of the last enabled admin over the API (if the answer were lost, no admin "
               "could sign in); run `fsg-auth rotate-admin-key` on the host instead")
