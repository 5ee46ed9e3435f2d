"""A unary stub method that sends its calls in batches.

`BatchedUnary` is awaited exactly like the stub method it stands in for (`await method(request,
timeout=...)`): it answers that call's response or raises that call's `grpc.aio.AioRpcError`, so callers,
their retries and the error translation (`errors.from_grpc`) are the same either way. Underneath, the calls
that arrive while a batch RPC is in flight are coalesced into the next one (`common.coalesce`), and the
service answers each item as its single call would (`common.errors.answer_each`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import grpc

from common import request_id
from common.coalesce import Coalescer
from common.errors import REFUSAL_METADATA
from edge.metrics import BATCH_ITEMS

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class Outcome(Protocol):
    """A batch reply's item: `response` when `status.code` is 0, else the status."""

    @property
    def response(self) -> Any: ...
    @property
    def status(self) -> Any: ...


def item_error(code: grpc.StatusCode, details: str, refusal: str = "") -> grpc.aio.AioRpcError:
    """The error the single call would have raised (its refusal in the trailing metadata, as there)."""
    trailing = grpc.aio.Metadata((REFUSAL_METADATA, refusal)) if refusal else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


class BatchedUnary(Generic[Req, Resp]):
    def __init__(
        self,
        batch_method: Callable[..., Awaitable[Any]],
        make_request: Callable[[list[Req]], Any],
        *,
        timeout: float,
        max_batch: int,
        name: str,
    ) -> None:
        self._name = name
        self._batch_method = batch_method
        self._make_request = make_request
        self._timeout = timeout
        self.coalescer: Coalescer[Req, Resp] = Coalescer(self._send, max_batch=max_batch)

    async def __call__(self, request: Req, timeout: float | None = None) -> Resp:
        # The batch RPC carries the service's usual deadline; a caller's own (shorter) one is not cut.
        return await self.coalescer.submit(request)

    async def _send(self, items: list[Req]) -> Sequence[Resp | BaseException]:
        BATCH_ITEMS.labels(self._name).observe(len(items))
        # This task was started by one of the batch's callers and inherited its request id; the batch carries
        # many (each in its item, bound per item by the service), so its RPC must not name one of them.
        request_id.request_id.set(None)
        try:
            reply = await self._batch_method(self._make_request(items), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            # The whole round trip failed: each call fails as it would have alone (one error object each).
            return [item_error(exc.code(), exc.details() or "") for _ in items]
        outcomes: Sequence[Outcome] = reply.items
        return [
            outcome.response if outcome.status.code == 0
            else item_error(_CODES.get(outcome.status.code, grpc.StatusCode.UNKNOWN), outcome.status.message,
                            outcome.status.refusal)
            for outcome in outcomes
        ]
