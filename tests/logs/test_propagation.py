"""How the request id travels inside the edge: a channel sends the id bound at the moment of each call as
`x-request-id`, and a batch RPC (started by one of its callers, so inheriting that caller's id) sends none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common import request_id as context
from edge.batching import BatchedUnary


class Recorder:
    """A stand-in for a grpc.aio channel's multicallable: records the metadata of each call."""

    def __init__(self) -> None:
        self.metadata: list[Any] = []

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        async def call(request: Any, metadata: Any = None, **_: Any) -> str:
            self.metadata.append(metadata)
            return "ok"
        return call


async def test_each_call_sends_the_id_bound_when_it_is_made() -> None:
    inner = Recorder()
    channel = context.RequestIdChannel(inner)  # type: ignore[arg-type]
    method = channel.unary_unary("/x.Y/Z")
    await method(b"")
    token = context.request_id.set("req_" + "a" * 32)
    try:
        await method(b"", metadata=(("authorization", "Bearer t"),))
    finally:
        context.request_id.reset(token)
    assert inner.metadata == [None, (("authorization", "Bearer t"), ("x-request-id", "req_" + "a" * 32))]


async def test_a_batch_rpc_names_none_of_its_callers() -> None:
    seen: list[str | None] = []

    async def batch_method(request: list[str], timeout: float) -> Any:
        seen.append(context.request_id.get())
        await asyncio.sleep(0)
        return type("Reply", (), {"items": [type("Item", (), {"response": r, "status": type("S", (), {"code": 0})})
                                            for r in request]})

    batched: BatchedUnary[str, str] = BatchedUnary(batch_method, lambda items: items, timeout=5, max_batch=8,
                                                   name="test")

    async def caller(request_id: str) -> tuple[str, str | None]:
        context.request_id.set(request_id)
        answer = await batched(request_id)
        return answer, context.request_id.get()

    answers = await asyncio.gather(*(caller(f"req_{n}") for n in range(4)))
    assert answers == [(f"req_{n}", f"req_{n}") for n in range(4)]  # each caller keeps its own id
    assert seen and set(seen) == {None}


@pytest.mark.parametrize(("value", "kept"), [
    ("req_" + "a" * 32, True), ("client-id.42:x", True), ("a" * 65, False), ("a b", False), ("a\nb", False),
    ("", False), (b"req_x", False)])
def test_only_a_well_formed_id_is_adopted(value: object, kept: bool) -> None:
    assert context.well_formed(value) == (value if kept else None)
