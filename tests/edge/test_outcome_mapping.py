"""Billing's named answers, written once and mapped once: the StrEnums billing's SQL answers, the proto enums
they travel as, and the edge's one table for each (edge/outcomes.py) agree member for member; and every
settlement outcome the edge can receive is answered explicitly."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from edge import outcomes
from edge.errors import ApiError
from edge.pipeline import _answer_settled, _Call
from edge.settings import EdgeSettings
from protos import billing_pb2, generation_pb2
from services.billing.outcomes import Outcome, Reason

RESULT = '{"projectPath": "p"}'


def test_every_reason_has_a_proto_value_and_an_edge_answer() -> None:
    assert {r.proto_name for r in Reason} == set(billing_pb2.Reason.keys())
    edge = set(outcomes.REFUSALS) | set(outcomes.ANSWERS)
    assert edge == set(billing_pb2.Reason.values())
    assert not set(outcomes.REFUSALS) & set(outcomes.ANSWERS)


def test_every_outcome_has_a_proto_value_and_exactly_one_edge_class() -> None:
    assert {o.name for o in Outcome} == set(billing_pb2.Outcome.keys()) - {"OUTCOME_UNSPECIFIED"}
    classes = [outcomes.PAID, outcomes.UNPAID, outcomes.CONFLICTING]
    every = [value for cls in classes for value in cls]
    assert sorted(every) == sorted(set(every))  # in one class only
    assert set(every) == set(billing_pb2.Outcome.values()) - {billing_pb2.OUTCOME_UNSPECIFIED}


def _call() -> _Call:
    # Settings are read on the paid path (the high-token threshold of `usage.high_tokens`): the defaults.
    return _Call(clients=None, settings=EdgeSettings(), caller=None, endpoint="/api/generate-scene",  # type: ignore[arg-type]
                 request_id="req_test", hold_id="hold", key=None, fingerprint=b"", faults=None,  # type: ignore[arg-type]
                 started=time.monotonic())


def _settled(outcome: Any, charged: str = "1.2500") -> billing_pb2.SettleResponse:
    return billing_pb2.SettleResponse(outcome=outcome, charged=charged,
                                      balance=billing_pb2.Balance(available="10.0000"))


EXECUTED = generation_pb2.ExecuteResponse(ok=True, result_json=RESULT, cost="2.0000", model="m", project_path="p")


@pytest.mark.parametrize("outcome", sorted(outcomes.PAID))
def test_paid_outcomes_deliver_the_result(outcome: int) -> None:
    response = _answer_settled(_call(), EXECUTED, _settled(outcome))
    assert response.status_code == 200 and response.headers["X-Credits-Charged"] == "1.25"


@pytest.mark.parametrize("outcome", sorted(outcomes.UNPAID))
def test_unpaid_outcomes_say_not_charged_and_deliver_nothing(outcome: int) -> None:
    with pytest.raises(ApiError) as raised:
        _answer_settled(_call(), EXECUTED, _settled(outcome, "0.0000"))
    assert raised.value.status == 503 and raised.value.body["error"] == "Not charged"
    assert "projectPath" not in raised.value.body


def test_a_post_of_another_amount_is_an_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edge.pipeline"), pytest.raises(ApiError) as raised:
        _answer_settled(_call(), EXECUTED, _settled(billing_pb2.EXISTS_WITH_DIFFERENT_AMOUNT))
    assert raised.value.status == 502 and raised.value.body["error"] == "Settlement conflict"
    assert str(raised.value.body["charged"]) == "1.2500", "the message states what was really charged"
    assert any("posted before with 1.2500" in r.getMessage() for r in caplog.records)
