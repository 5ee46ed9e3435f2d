"""The metered call, coordinated by the edge (a TigerBeetle-style two-phase transfer around Claude):

    Prepare  (generation: validate, answer the Plan and its worst case; nothing held, nothing kept)
    → Reserve max(endpoint minimum, worst case)   (billing: a pending hold, or why not; with an
                                                   Idempotency-Key, the key's record answers first)
    → Execute the Plan                            (generation: Claude, validate, stage the result under the hold)
    → Commit the actual cost                      (billing: post, usage row, replay record: one transaction)
      or Release on any failure                   (billing: void, failed usage row)

One owner for each piece of a call's state: billing holds the money and the Idempotency-Key's record in the
same transaction; generation keeps nothing between Prepare and Execute (the edge carries the Plan); a staged
result is part of the project only once its hold is posted, so a result is delivered and kept only if it is
paid. Every settlement outcome is answered explicitly (edge/outcomes.py). README ("A metered call") draws
the sequence and what each failure point leaves behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
from fastapi import Response

from common import faults
from common import request_id as context
from common.faults import FaultPoint
from common.logging import get_logger
from common.money import ZERO, for_json, from_wire, to_wire
from edge.clients import ServiceClients
from edge.errors import ApiError, from_grpc
from edge.json import extend_object
from edge.metrics import CREDITS_ABSORBED, CREDITS_CHARGED, GENERATIONS, LATENCY, TOKENS
from edge.outcomes import CONFLICTING, FAILURE_STATUS, PAID, REFUSALS
from edge.security import Caller
from edge.settings import EdgeSettings
from protos import billing_pb2, generation_pb2

log = logging.getLogger(__name__)
_events = get_logger(__name__)
Reason = billing_pb2.Reason
#: GenerateRequest fields that differ between attempts of one logical request (not in its fingerprint).
_PER_ATTEMPT_FIELDS = ("request_id", "simulator_fault")
#: Background voids of holds whose Reserve answer was lost (kept referenced until they finish).
_VOIDS: set[asyncio.Task[billing_pb2.SettleResponse | None]] = set()


@dataclass(frozen=True)
class MeteredCall:
    """What a route asks for: a generation request (its kind's own part inside) and the caller's key."""

    request: generation_pb2.GenerateRequest
    idempotency_key: str | None = None


@dataclass
class _Call:
    """One attempt of a metered call, as the pipeline runs it. Its endpoint is the kind's own name until
    Prepare answers the plan, which names it as usage rows and metrics do."""

    clients: ServiceClients
    settings: EdgeSettings
    caller: Caller
    endpoint: str
    request_id: str
    hold_id: str
    key: str | None
    fingerprint: bytes
    faults: faults.Faults
    started: float
    #: How long each step took (ms), answered in Server-Timing so a call's timeline is visible hop by hop.
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str, since: float) -> None:
        self.timings[step] = (time.perf_counter() - since) * 1000

    def usage(self, *, project_path: str = "", model: str = "", input_tokens: int = 0, output_tokens: int = 0,
              error: str = "", provider_cost: Decimal = ZERO) -> billing_pb2.Usage:
        return billing_pb2.Usage(
            endpoint=self.endpoint, method="POST", input_tokens=input_tokens, output_tokens=output_tokens,
            model=model, project_path=project_path, request_id=self.request_id,
            latency_ms=int((time.monotonic() - self.started) * 1000), error_message=error[:1000],
            provider_cost=to_wire(provider_cost),
        )


def fingerprint(request: generation_pb2.GenerateRequest) -> bytes:
    """What makes two requests "the same" for an Idempotency-Key: every field the caller chose (its kind's
    own request included, so another kind is another request), minus the per-attempt ones."""
    same = generation_pb2.GenerateRequest()
    same.CopyFrom(request)
    for name in _PER_ATTEMPT_FIELDS:
        same.ClearField(name)  # type: ignore[arg-type]
    return hashlib.sha256(same.SerializeToString(deterministic=True)).digest()


async def run_metered(clients: ServiceClients, settings: EdgeSettings, caller: Caller, metered: MeteredCall
                      ) -> Response:
    """One metered call. Every answer, error or not, names its request id in `X-Request-ID`: the id its
    hold and usage row carry, so a caller (or an operator) can trace any outcome, a 402 or a 5xx too."""
    request_id = context.request_id.get()
    if request_id is None:  # an app without edge.access_log's middleware (a unit test's): bind one here
        request_id = f"req_{uuid.uuid4().hex}"
        context.request_id.set(request_id)
    try:
        return await _run(clients, settings, caller, metered, request_id)
    except ApiError as exc:
        # Every ApiError raised below is a fresh instance (never a shared constant), so this is safe. An
        # error that names its request (a replayed call names the first attempt's) keeps that id.
        exc.headers = {**(exc.headers or {}), "X-Request-ID": str(exc.body.get("requestId", request_id))}
        raise


async def _run(clients: ServiceClients, settings: EdgeSettings, caller: Caller, metered: MeteredCall,
               request_id: str) -> Response:
    request = metered.request
    request.user_id = caller.id
    key = metered.idempotency_key
    call = _Call(
        clients, settings, caller, str(request.WhichOneof("kind")), request_id, str(uuid.uuid4()), key,
        fingerprint(request) if key else b"",
        faults.parse(request.simulator_fault, enabled=settings.fault_injection), time.monotonic(),
    )
    request.request_id = request_id

    began = time.perf_counter()
    try:
        plan = await clients.call("generation", clients.prepare, request)
    except ApiError as exc:
        if key and 400 <= exc.status < 500:
            # A key seen before answers from its record even if the input no longer validates (say the
            # project was deleted since): the retry gets the first result.
            return await _answer_from_record(call, exc)
        raise
    call.timed("prepare", began)
    call.endpoint = plan.endpoint
    required = from_wire(plan.required)

    reserved = await _reserve(call, required)
    if reserved.reason == Reason.KEY_REPLAY:
        return replay_response(reserved.replay)
    if not reserved.ok:
        raise REFUSALS[reserved.reason](reserved, caller.id, call.endpoint, required)

    executed = await _execute(call, plan, required)
    await call.faults.hit(FaultPoint.CRASH_BEFORE_COMMIT)
    return await _commit(call, executed, required)


async def _answer_from_record(call: _Call, error: ApiError) -> Response:
    """Prepare refused a keyed request: the key's record answers if it has something to say, else the
    refusal stands."""
    assert call.key is not None
    try:
        found = await call.clients.call("billing", call.clients.billing.LookupKey, billing_pb2.LookupKeyRequest(
            user_id=call.caller.id, idempotency_key=call.key, fingerprint=call.fingerprint))
    except ApiError:
        raise error from None
    if found.reason == Reason.KEY_REPLAY:
        return replay_response(found.replay)
    if found.reason in REFUSALS:
        raise REFUSALS[found.reason](found, call.caller.id, call.endpoint, ZERO)
    raise error


async def _reserve(call: _Call, required: Decimal) -> billing_pb2.ReserveResponse:
    """Place the hold. If its answer is lost (a deadline, a dropped connection), the hold may exist without
    anyone to settle it: void its id in the background, so its credits and its concurrency slot come back
    now rather than when it expires (a Reserve that arrives after the void places nothing)."""
    settings = call.settings
    # Longer than the longest a call can take to reach its Commit (the generation deadline) plus the
    # Commit's own retry window: a live call's post always comes before the hold's deadline.
    ttl = math.ceil(settings.generation_timeout_seconds + settings.settle_retry_seconds + settings.hold_margin_seconds)
    request = billing_pb2.ReserveRequest(
        hold_id=call.hold_id, user_id=call.caller.id, amount=to_wire(required), ttl_seconds=ttl,
        endpoint=call.endpoint, request_id=call.request_id, idempotency_key=call.key or "",
        fingerprint=call.fingerprint, fault=call.faults.spec(),
    )
    began = time.perf_counter()
    try:
        reserved: billing_pb2.ReserveResponse = await call.clients.call("billing", call.clients.reserve, request)
    except ApiError as exc:
        if exc.status in (503, 504):
            task = asyncio.create_task(_void(call, call.usage(error="the reserve's answer was lost")))
            _VOIDS.add(task)
            task.add_done_callback(_VOIDS.discard)
        raise
    call.timed("reserve", began)
    return reserved


async def _void(call: _Call, usage: billing_pb2.Usage) -> billing_pb2.SettleResponse | None:
    """Void the hold (or, if it was never placed, its id) with its failed usage row, retried through a brief
    billing outage; None if billing stayed away (the hold then expires by itself: nobody will post it)."""
    request = billing_pb2.ReleaseRequest(hold_id=call.hold_id, user_id=call.caller.id, usage=usage)
    try:
        return await _settle(call, call.clients.billing.Release, request)
    except ApiError:
        log.error("void of hold %s failed; it expires by itself, uncharged", call.hold_id)
        return None


async def _settle(call: _Call, method: Any, request: Any) -> billing_pb2.SettleResponse:
    """Commit or Release, retried through a billing outage (idempotent by hold id)."""
    result: billing_pb2.SettleResponse = await call.clients.call_idempotent(
        "billing", method, request, retry_for=call.settings.settle_retry_seconds)
    return result


async def _execute(call: _Call, plan: generation_pb2.Plan, required: Decimal) -> generation_pb2.ExecuteResponse:
    """Run the plan. On any failure the hold is voided: this edge is the only one that could post it, and it
    will not, so the answer can say "not charged" (and the staged result, if any, is never seen)."""
    request = generation_pb2.ExecuteRequest(plan=plan, hold_id=call.hold_id, budget=to_wire(required))
    path = _project_path(plan.request)
    began = time.perf_counter()
    try:
        executed = await call.clients.generation.Execute(request, timeout=call.settings.generation_timeout_seconds)
    except grpc.aio.AioRpcError as exc:
        GENERATIONS.labels(call.endpoint, "service_error").inc()
        error = from_grpc(exc, "generation")
        await asyncio.shield(_void(call, call.usage(project_path=path, model=plan.model,
                                                    error=f"{error.body['error']}: {exc.code().name}")))
        error.body["message"] = f"{error.body.get('message', error.body['error'])}. No credits were charged."
        error.body["requestId"] = call.request_id
        raise error from exc
    except BaseException:
        await asyncio.shield(_void(call, call.usage(project_path=path, model=plan.model, error="request aborted")))
        raise
    call.timed("execute", began)
    if executed.ok:
        return executed

    GENERATIONS.labels(call.endpoint, executed.error_type or "failed").inc()
    await asyncio.shield(_void(call, call.usage(
        project_path=executed.project_path or path, model=executed.model, input_tokens=executed.input_tokens,
        output_tokens=executed.output_tokens, error=f"{executed.error_type}: {executed.error_message}",
        provider_cost=from_wire(executed.cost))))
    error = ApiError(FAILURE_STATUS.get(executed.error_type, 502), "Generation failed",
                     f"{executed.error_message}. No credits were charged.", type=executed.error_type,
                     requestId=call.request_id)
    if executed.retry_after_seconds:
        error.headers = {"Retry-After": str(executed.retry_after_seconds)}
    raise error


async def _commit(call: _Call, executed: generation_pb2.ExecuteResponse, required: Decimal) -> Response:
    """Post the actual cost (at most the hold: any excess is ours, counted in fsg_credits_absorbed_total)."""
    cost = from_wire(executed.cost)
    charge = min(cost, required)
    if charge < cost:
        CREDITS_ABSORBED.labels(call.endpoint).inc(float(cost - charge))
        log.warning("hold %s: actual cost %s exceeds the hold %s; charging the hold, absorbing %s", call.hold_id,
                    cost, required, cost - charge)
    request = billing_pb2.CommitRequest(
        hold_id=call.hold_id, user_id=call.caller.id, amount=to_wire(charge),
        usage=call.usage(project_path=executed.project_path, model=executed.model,
                         input_tokens=executed.input_tokens, output_tokens=executed.output_tokens,
                         provider_cost=cost),
        result_json=executed.result_json if call.key else "", fault=call.faults.spec(),
    )
    began = time.perf_counter()
    try:
        settled = await asyncio.shield(_settle(call, call.clients.commit, request))
    except ApiError:
        settled = await _settle_unconfirmed(call, executed)
    call.timed("commit", began)
    return _answer_settled(call, executed, settled)


async def _settle_unconfirmed(call: _Call, executed: generation_pb2.ExecuteResponse) -> billing_pb2.SettleResponse:
    """The Commit's retry window passed without an answer: it may have landed (its answer lost) or not. A
    Release decides: it voids the hold if it is still pending, and answers already_posted if the Commit had
    landed. Without an answer at all, say exactly what is known."""
    settled = await asyncio.shield(_void(call, call.usage(
        project_path=executed.project_path, model=executed.model, input_tokens=executed.input_tokens,
        output_tokens=executed.output_tokens, error="the commit could not be confirmed",
        provider_cost=from_wire(executed.cost))))
    if settled is None:
        raise ApiError(503, "Billing unavailable",
                       "We could not reach billing to confirm whether this call was charged. If it was, its result "
                       "is in your project; if it was not, nothing was charged and its result was not kept. "
                       "Your request id tells us which.", projectPath=executed.project_path,
                       requestId=call.request_id)
    return settled


def _answer_settled(call: _Call, executed: generation_pb2.ExecuteResponse,
                    settled: billing_pb2.SettleResponse) -> Response:
    """Every settlement outcome, answered explicitly: paid → the result; not paid → an error that says so."""
    charged = from_wire(settled.charged)
    if settled.outcome in PAID:
        GENERATIONS.labels(call.endpoint, "ok").inc()
        LATENCY.labels(call.endpoint).observe(time.monotonic() - call.started)
        CREDITS_CHARGED.labels(call.endpoint).inc(float(charged))
        TOKENS.labels(executed.model, "input").inc(executed.input_tokens)
        TOKENS.labels(executed.model, "output").inc(executed.output_tokens)
        if executed.input_tokens + executed.output_tokens > call.settings.high_tokens_threshold:
            _events.warning("usage.high_tokens", endpoint=call.endpoint, model=executed.model,
                            input_tokens=executed.input_tokens, output_tokens=executed.output_tokens,
                            threshold=call.settings.high_tokens_threshold, credits_charged=str(charged))
        response = success_response(executed.result_json, executed.input_tokens, executed.output_tokens,
                                    executed.model, charged, settled.balance, call.request_id)
        call.timings["total"] = (time.monotonic() - call.started) * 1000
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v:.2f}" for k, v in call.timings.items())
        return response
    if settled.outcome in CONFLICTING:
        GENERATIONS.labels(call.endpoint, "settlement_conflict").inc()
        log.error("hold %s was posted before with %s credits, not the %s this call computed", call.hold_id,
                  charged, executed.cost)
        raise ApiError(502, "Settlement conflict",
                       f"This call was already charged {for_json(charged)} credits, not the amount it computed; its "
                       "result is in your project. Please report this request id.",
                       charged=charged, projectPath=executed.project_path, requestId=call.request_id)
    GENERATIONS.labels(call.endpoint, "expired").inc()
    log.warning("hold %s ended %s before its commit; the result is not kept", call.hold_id,
                billing_pb2.Outcome.Name(settled.outcome))
    raise ApiError(503, "Not charged",
                   "The hold on your credits ended before this call could be charged, so you were not charged and "
                   "its result was not kept; please retry", requestId=call.request_id)


async def quote(clients: ServiceClients, caller: Caller, request: generation_pb2.GenerateRequest) -> dict[str, Any]:
    """What a call would hold, without running it: Prepare (which validates and plans, holding and keeping
    nothing) and the caller's balance. The hold is the one `_run` would place: max(minimum, worst case)."""
    request.user_id = caller.id
    plan = await clients.call("generation", clients.prepare, request)
    balance = await clients.call("billing", clients.billing.GetBalance, billing_pb2.UserRef(user_id=caller.id))
    return {
        "endpoint": plan.endpoint, "model": plan.model, "minimum": from_wire(plan.minimum),
        "worstCase": from_wire(plan.max_cost), "hold": from_wire(plan.required),
        "credits_remaining": None if balance.unlimited else from_wire(balance.available),
    }


def _project_path(request: generation_pb2.GenerateRequest) -> str:
    """The project a call works on ("" for a kind that creates one)."""
    own = getattr(request, str(request.WhichOneof("kind")))
    return str(getattr(own, "project_path", ""))


def success_response(result_json: str, input_tokens: int, output_tokens: int, model: str, charged: Decimal,
                     balance: billing_pb2.Balance, request_id: str, *, replayed: bool = False) -> Response:
    """A paid call's answer, the same bytes for the first answer and every replay of it."""
    remaining: Decimal | None = None if balance.unlimited else from_wire(balance.available)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "model": model,
        "credits_charged": charged,
        "credits_remaining": remaining,
    }
    headers = {
        "X-Credits-Charged": str(for_json(charged)),
        "X-Credits-Remaining": "unlimited" if remaining is None else str(for_json(remaining)),
        "X-Request-ID": request_id,
    }
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    body = extend_object(result_json, {"usage": usage, "requestId": request_id})
    return Response(body, media_type="application/json", headers=headers)


def replay_response(replay: billing_pb2.Replay) -> Response:
    """The first answer of a paid call, for a retry with its Idempotency-Key (charged nothing again)."""
    return success_response(replay.result_json, replay.input_tokens, replay.output_tokens, replay.model,
                            from_wire(replay.charged), replay.balance, replay.request_id, replayed=True)

