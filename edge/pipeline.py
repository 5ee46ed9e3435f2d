"""The metered call, coordinated by the edge (TigerBeetle-style two-phase transfer around Claude):

    Prepare (generation: validate input, bound the worst case; nothing held yet)
    → Reserve max(endpoint minimum, worst case)      (billing: pending hold, or 402, or 429 over a rate limit)
    → Execute                                        (generation: Claude, validate, save)
    → Commit actual cost | Release on any failure    (billing: post or void + usage row)

Settlement calls are idempotent by hold id and retried through brief outages; if billing stays away
the hold expires by itself (the sweeper voids it), so a fault never takes a user's credits.

With an `Idempotency-Key`, Prepare also claims the key (generation's idempotent_requests) and answers
for a key seen before: the stored response (replay), the saved but unanswered result (resume: Commit
of the same hold again, so it is charged once), 409 while another attempt runs, 422 for another body.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import grpc
from fastapi import Response

from common.money import for_json, from_wire, to_wire
from edge.clients import ServiceClients
from edge.errors import IDEMPOTENCY_KEY_REUSED, ApiError, from_grpc
from edge.json import extend_object
from edge.metrics import CREDITS_CHARGED, GENERATIONS, LATENCY, TOKENS
from edge.rate_limits import RATE_LIMITS, rate_limited
from edge.security import Caller
from protos import billing_pb2, generation_pb2

log = logging.getLogger(__name__)

#: Claude failures → HTTP status for the caller ("superseded": another attempt with the same
#: Idempotency-Key took over after this one's lease ran out).
FAILURE_STATUS = {"rate_limited": 503, "overloaded": 503, "timeout": 504, "upstream_error": 502,
                  "invalid_output": 502, "superseded": 409}
Idempotent = generation_pb2.IdempotentState
#: The lease of an idempotency claim beyond the longest an attempt can take.
IDEMPOTENCY_LEASE_MARGIN_SECONDS = 30
#: How long storing or freeing an idempotency record retries through a generation outage.
IDEMPOTENCY_RETRY_SECONDS = 3.0
#: Headers of a success that a replay repeats (it also says `Idempotent-Replayed: true`).
REPLAYED_HEADERS = frozenset({"x-credits-charged", "x-credits-remaining", "x-request-id"})


async def _settle(clients: ServiceClients, method: Any, request: Any) -> billing_pb2.SettleResponse:
    """Commit or Release, retried through a billing outage (idempotent by hold id)."""
    result: billing_pb2.SettleResponse = await clients.call_idempotent(
        "billing", method, request, retry_for=clients.settings.settle_retry_seconds
    )
    return result


def _usage(endpoint: str, request_id: str, started: float, *, project_path: str = "", model: str = "",
           input_tokens: int = 0, output_tokens: int = 0, error: str = "",
           provider_cost: Decimal | None = None) -> billing_pb2.Usage:
    return billing_pb2.Usage(
        endpoint=endpoint, method="POST", input_tokens=input_tokens, output_tokens=output_tokens, model=model,
        project_path=project_path, request_id=request_id, latency_ms=int((time.monotonic() - started) * 1000),
        error_message=error[:1000], provider_cost=to_wire(provider_cost) if provider_cost else "",
    )


async def run_metered(
    clients: ServiceClients,
    caller: Caller,
    endpoint: str,
    minimum: Decimal,
    gen_request: generation_pb2.GenerateRequest,
    generation_timeout: float,
    idempotency_key: str | None = None,
) -> Response:
    """One metered call. Every answer, error or not, names its request id in `X-Request-ID`: the id its
    hold and usage row carry, so a caller (or an operator) can trace any outcome, a 402 or a 5xx too."""
    request_id = f"req_{uuid.uuid4().hex}"
    try:
        return await _run_metered(clients, caller, endpoint, minimum, gen_request, generation_timeout, request_id,
                                  idempotency_key)
    except ApiError as exc:
        # Every ApiError raised below is a fresh instance (never a shared constant), so this is safe. An
        # error that names its request (a resumed idempotent call names the first attempt's) keeps that id.
        exc.headers = {**(exc.headers or {}), "X-Request-ID": str(exc.body.get("requestId", request_id))}
        raise


async def _run_metered(
    clients: ServiceClients,
    caller: Caller,
    endpoint: str,
    minimum: Decimal,
    gen_request: generation_pb2.GenerateRequest,
    generation_timeout: float,
    request_id: str,
    idempotency_key: str | None,
) -> Response:
    started = time.monotonic()
    hold_id = str(uuid.uuid4())
    gen_request.user_id = caller.id
    gen_request.request_id = request_id
    if idempotency_key:
        gen_request.idempotency_key = idempotency_key
        gen_request.hold_id = hold_id
        # Longer than this attempt can possibly take (its Claude call, then settling through an outage), so
        # a live attempt never loses its claim; only a dead one's claim is ever taken over.
        gen_request.idempotency_lease_seconds = int(
            generation_timeout + clients.settings.settle_retry_seconds + IDEMPOTENCY_LEASE_MARGIN_SECONDS
        )

    prepared = await clients.call("generation", clients.prepare, gen_request)
    required = max(minimum, from_wire(prepared.max_cost))
    if prepared.idempotent != Idempotent.IDEMPOTENT_NONE and prepared.idempotent != Idempotent.IDEMPOTENT_NEW:
        return await _answer_from_record(clients, gen_request, endpoint, prepared, required)

    try:
        reserved = await clients.call(
            "billing", clients.reserve,
            billing_pb2.ReserveRequest(hold_id=hold_id, user_id=caller.id, amount=to_wire(required),
                                       endpoint=endpoint, request_id=request_id),
        )
    except BaseException:
        await asyncio.shield(_abandon(clients, gen_request))
        raise
    if not reserved.ok:
        # Nothing is held: free the key so a retry (after the wait, or a top-up) runs afresh.
        await asyncio.shield(_abandon(clients, gen_request))
    if not reserved.ok and reserved.reason in RATE_LIMITS:
        raise rate_limited(caller.id, endpoint, reserved)
    if not reserved.ok:
        GENERATIONS.labels(endpoint, "insufficient_credits").inc()
        log.info("user %d: insufficient credits for %s (required %s, available %s)", caller.id, endpoint,
                 required, reserved.available)
        raise ApiError(402, "Insufficient credits", remaining=from_wire(reserved.available), required=required,
                       message="Please purchase more credits to continue")

    async def give_up(usage: billing_pb2.Usage) -> None:
        """Void the hold and free the idempotency key: nothing was charged, so a retry may run afresh."""
        await _release(clients, hold_id, usage)
        await _abandon(clients, gen_request)

    try:
        executed = await clients.generation.Execute(gen_request, timeout=generation_timeout)
    except grpc.aio.AioRpcError as exc:
        GENERATIONS.labels(endpoint, "service_error").inc()
        error = from_grpc(exc, "generation")
        await asyncio.shield(give_up(_usage(endpoint, request_id, started, project_path=gen_request.project_path,
                                            model=prepared.model, error=f"{error.body['error']}: {exc.code().name}")))
        raise error from exc
    except BaseException:
        await asyncio.shield(give_up(_usage(endpoint, request_id, started, project_path=gen_request.project_path,
                                            model=prepared.model, error="request aborted")))
        raise

    if not executed.ok:
        GENERATIONS.labels(endpoint, executed.error_type or "failed").inc()
        provider_cost = from_wire(executed.cost)
        await asyncio.shield(give_up(_usage(
            endpoint, request_id, started, project_path=executed.project_path or gen_request.project_path,
            model=executed.model, input_tokens=executed.input_tokens, output_tokens=executed.output_tokens,
            error=f"{executed.error_type}: {executed.error_message}", provider_cost=provider_cost,
        )))
        headers = {"Retry-After": str(executed.retry_after_seconds)} if executed.retry_after_seconds else None
        error = ApiError(FAILURE_STATUS.get(executed.error_type, 502), "Generation failed",
                         f"{executed.error_message}. No credits were charged.", type=executed.error_type,
                         requestId=request_id)
        error.headers = headers
        raise error

    response = await _commit(clients, endpoint, executed, hold_id, required, request_id, started)
    if idempotency_key:
        await asyncio.shield(_complete(clients, _ref(gen_request, hold_id), response))
    return response


async def _commit(
    clients: ServiceClients, endpoint: str, executed: generation_pb2.ExecuteResponse, hold_id: str,
    required: Decimal, request_id: str, started: float,
) -> Response:
    """Post the actual cost (at most the hold) and build the success response."""
    cost = from_wire(executed.cost)
    charge = min(cost, required)
    if charge < cost:
        log.warning("hold %s: actual cost %s exceeds the hold %s; charging the hold", hold_id, cost, required)
    try:
        settled = await asyncio.shield(_settle(
            clients, clients.commit,
            billing_pb2.CommitRequest(hold_id=hold_id, amount=to_wire(charge), usage=_usage(
                endpoint, request_id, started, project_path=executed.project_path, model=executed.model,
                input_tokens=executed.input_tokens, output_tokens=executed.output_tokens,
                # What the provider cost us when it exceeded the hold (the user pays at most the hold).
                provider_cost=cost if charge < cost else None)),
        ))
    except ApiError as exc:
        raise ApiError(503, "Billing unavailable",
                       "Your result was saved in the project and you have not been charged; please retry later",
                       projectPath=executed.project_path, requestId=request_id) from exc

    balance = settled.balance
    charged = from_wire(settled.charged)
    GENERATIONS.labels(endpoint, "ok").inc()
    LATENCY.labels(endpoint).observe(time.monotonic() - started)
    CREDITS_CHARGED.labels(endpoint).inc(float(charged))
    TOKENS.labels(executed.model, "input").inc(executed.input_tokens)
    TOKENS.labels(executed.model, "output").inc(executed.output_tokens)
    remaining: Decimal | None = None if balance.unlimited else from_wire(balance.available)
    usage: dict[str, Any] = {
        "input_tokens": executed.input_tokens,
        "output_tokens": executed.output_tokens,
        "model": executed.model,
        "credits_charged": charged,
        "credits_remaining": remaining,
    }
    body = extend_object(executed.result_json, {"usage": usage, "requestId": request_id})
    return Response(body, media_type="application/json", headers={
        "X-Credits-Charged": str(for_json(charged)),
        "X-Credits-Remaining": "unlimited" if remaining is None else str(for_json(remaining)),
        "X-Request-ID": request_id,
    })


async def _answer_from_record(
    clients: ServiceClients, gen_request: generation_pb2.GenerateRequest, endpoint: str,
    prepared: generation_pb2.PrepareResponse, required: Decimal,
) -> Response:
    """A retry of a request whose Idempotency-Key is known: replay, resume, or refuse."""
    state = prepared.idempotent
    if state == Idempotent.IDEMPOTENT_REPLAY:
        stored = prepared.stored
        return Response(stored.body_json, status_code=stored.status, media_type="application/json",
                        headers={**stored.headers, "Idempotent-Replayed": "true"})
    if state == Idempotent.IDEMPOTENT_MISMATCH:
        raise ApiError(422, "Idempotency key reused",
                       "This Idempotency-Key was already used with a different request; use a new key",
                       fields=[IDEMPOTENCY_KEY_REUSED])
    if state == Idempotent.IDEMPOTENT_IN_PROGRESS:
        error = ApiError(409, "Request in progress",
                         "A request with this Idempotency-Key is still running; retry after it ends")
        error.headers = {"Retry-After": str(prepared.retry_after_seconds or 1)}
        raise error
    # RESUME: the first attempt's result was saved but never answered (it died, or billing was away).
    # Committing its hold again is idempotent: charged at most once, whatever happened before.
    executed = prepared.executed
    log.info("resuming idempotent request %s (hold %s)", executed.request_id, executed.hold_id)
    response = await _commit(clients, endpoint, executed, executed.hold_id, required, executed.request_id,
                             time.monotonic())
    await asyncio.shield(_complete(clients, _ref(gen_request, executed.hold_id), response))
    return response


def _ref(gen_request: generation_pb2.GenerateRequest, hold_id: str) -> generation_pb2.IdempotentRef:
    return generation_pb2.IdempotentRef(user_id=gen_request.user_id, idempotency_key=gen_request.idempotency_key,
                                        hold_id=hold_id)


async def _complete(clients: ServiceClients, ref: generation_pb2.IdempotentRef, response: Response) -> None:
    """Store the answer under the key. Best effort: if it is lost, a retry resumes instead of replaying,
    which settles the same hold again (charged once) and answers the same result."""
    stored = generation_pb2.StoredResponse(
        status=response.status_code, body_json=bytes(response.body).decode(),
        headers={k: v for k, v in response.headers.items() if k.lower() in REPLAYED_HEADERS},
    )
    try:
        await clients.call_idempotent("generation", clients.generation.CompleteIdempotent,
                                      generation_pb2.CompleteIdempotentRequest(ref=ref, response=stored),
                                      retry_for=IDEMPOTENCY_RETRY_SECONDS)
    except ApiError:
        log.warning("could not store the response of hold %s under its idempotency key", ref.hold_id)


async def _abandon(clients: ServiceClients, gen_request: generation_pb2.GenerateRequest) -> None:
    """Free the key after a failure that charged nothing. Best effort: a claim left behind only makes
    retries wait (409) until its lease ends."""
    if not gen_request.idempotency_key:
        return
    try:
        await clients.call_idempotent("generation", clients.generation.AbandonIdempotent,
                                      _ref(gen_request, gen_request.hold_id), retry_for=IDEMPOTENCY_RETRY_SECONDS)
    except ApiError:
        log.warning("could not free the idempotency key of hold %s; it frees itself when its lease ends",
                    gen_request.hold_id)


async def _release(clients: ServiceClients, hold_id: str, usage: billing_pb2.Usage) -> None:
    try:
        await _settle(clients, clients.billing.Release, billing_pb2.ReleaseRequest(hold_id=hold_id, usage=usage))
    except ApiError:
        log.error("release of hold %s failed; the sweeper will expire it", hold_id)
