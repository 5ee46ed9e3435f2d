"""Every domain error any service can raise names a refusal, and every refusal has the edge's answer (errors
are translated once, at each boundary, and none falls through to a generic 502); the refusal reaches the edge
with the status, whether the call was single or part of a batch."""

from __future__ import annotations

import importlib
import inspect

import grpc
import pytest

from common.errors import REFUSAL_METADATA, DomainError, Refusal
from edge.batching import item_error
from edge.errors import REFUSALS, from_grpc

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


def test_every_refusal_has_an_answer() -> None:
    assert set(REFUSALS) == set(Refusal)


@pytest.mark.parametrize("error", _domain_errors(), ids=lambda e: e.__name__)
def test_every_domain_error_maps_to_a_4xx_or_503(error: type[DomainError]) -> None:
    raised = error()
    assert isinstance(raised.refusal, Refusal)
    answer = REFUSALS[raised.refusal](raised.message, "a service")
    assert 400 <= answer.status < 500 or answer.status == 503
    assert raised.message and raised.message != "error"


def test_the_refusal_decides_not_the_status_code() -> None:
    """Both of these travel as FAILED_PRECONDITION; the edge tells them apart by their refusal."""
    for refusal, status, error in ((Refusal.IDEMPOTENCY_KEY_REUSED, 422, "Idempotency key reused"),
                                   (Refusal.LAST_ENABLED_ADMIN, 409, "Last enabled admin")):
        single = grpc.aio.AioRpcError(grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(),
                                      grpc.aio.Metadata((REFUSAL_METADATA, refusal)), details="why")
        batched = item_error(grpc.StatusCode.FAILED_PRECONDITION, "why", refusal)
        for exc in (single, batched):
            answer = from_grpc(exc, "billing")
            assert (answer.status, answer.body["error"]) == (status, error)
