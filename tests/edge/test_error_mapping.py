"""Every domain error any service can raise has an HTTP mapping at the edge (errors are translated once,
at each boundary, and none falls through to a generic 502)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from common.errors import DomainError
from edge.errors import GRPC_TO_HTTP

MODULES = ["common.errors", "services.auth.errors", "services.billing.errors", "services.generation.errors"]


def _domain_errors() -> list[type[DomainError]]:
    found: list[type[DomainError]] = []
    for name in MODULES:
        module = importlib.import_module(name)
        found += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, DomainError) and obj is not DomainError and obj.__module__ == name]
    return found


def test_there_are_domain_errors_to_check() -> None:
    assert len(_domain_errors()) >= 15


@pytest.mark.parametrize("error", _domain_errors(), ids=lambda e: e.__name__)
def test_every_domain_error_maps_to_a_4xx_or_503(error: type[DomainError]) -> None:
    assert error.code in GRPC_TO_HTTP, f"{error.__name__} ({error.code}) has no HTTP mapping"
    status = GRPC_TO_HTTP[error.code]
    assert 400 <= status < 500 or status == 503
    assert error().message and error().message != "error"
