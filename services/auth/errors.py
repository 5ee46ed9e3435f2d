"""Auth domain errors.

    DomainError (common.errors)
    ├── UserNotFound          NOT_FOUND
    ├── UsernameTaken         ALREADY_EXISTS
    ├── EmailTaken            ALREADY_EXISTS
    └── InvalidUserInput      INVALID_ARGUMENT
"""

import grpc

from common.errors import DomainError


class UserNotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    message = "User not found"


class UsernameTaken(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    message = "Username already exists"


class EmailTaken(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    message = "Email already exists"


class InvalidUserInput(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    message = "Invalid user input"
