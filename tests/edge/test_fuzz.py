"""Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis), against the
running stack: no request, valid or not, may get a 5xx, and every response must match the schema the
edge declares (status, and body shape for JSON bodies, errors included).

Deterministic (derandomized Hypothesis, no example database) and bounded (a few examples per operation).
"""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from edge.app import create_app
from edge.settings import EdgeSettings
from tests.helpers import TestUser, UserFactory
from tests.stack import Stack

EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def fuzz_user(users: UserFactory) -> TestUser:
    """A user with enough credits that metered calls are really made (and charged), not just 402s."""
    return users.create(credits=1_000_000, prefix="fuzz")


def _load_schema() -> Any:
    # The schema the edge serves, built in-process so that pytest can collect one test per operation
    # (schemathesis' lazy `from_fixture` loader does not run under pytest 9: it sets `node._nodeid`).
    # `test_the_stack_serves_this_schema` checks the running edge serves exactly this document.
    loaded = schemathesis.openapi.from_dict(create_app(EdgeSettings()).openapi())
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES_PER_OPERATION,
        deterministic=True, database="none",
    )
    return loaded


schema = _load_schema()


def test_the_stack_serves_this_schema(client: httpx.Client) -> None:
    assert client.get("/openapi.json").json() == schema.raw_schema


#: Path parameters the fuzzer must not aim account changes at: rotating or disabling the admin (or the
#: fuzz user) would break every later test's key. Any other generated username is fair game.
_PROTECTED_USERNAMES = {"admin"}


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, stack: Stack, fuzz_user: TestUser
) -> None:
    username = (case.path_parameters or {}).get("username")
    if username in _PROTECTED_USERNAMES or username == fuzz_user.username:
        hypothesis.reject()
    key = stack.admin_key if case.path.startswith("/api/admin/") else fuzz_user.api_key
    headers = dict(case.headers or {})
    # X-Sim-Fault is the simulator's fault-injection hook (GENERATION_SIMULATED only): a value it knows
    # makes Claude fail on purpose, one it does not is a simulator 400 → a deliberate 502. Not API input.
    headers.pop("X-Sim-Fault", None)
    headers["X-API-Key"] = key
    case.headers = headers
    case.call_and_validate(base_url=stack.edge_url, timeout=60,
                           checks=[not_a_server_error, response_schema_conformance])
