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
    channel = context.request_id_channel(inner)  # type: ignore[arg-type]
    method = channel.unary_unary("/x.Y/Z")
    await method(b"")
    token = context.request_id.set("req_" + "a" * 32)
    try:
        await method(b"", metadata=(("authorization", "Bearer t"),))
        user = context.user_id.set(42)
        await method(b"")
        context.user_id.reset(user)
    finally:
        context.request_id.reset(token)
    assert inner.metadata == [None, (("authorization", "Bearer t"), ("x-request-id", "req_" + "a" * 32)),
                              (("x-request-id", "req_" + "a" * 32), ("x-user-id", "42"))]


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


async def test_a_service_binds_what_the_metadata_says_or_nothing() -> None:
    """The server interceptor, as grpc.aio calls it: in the RPC's own task, before the handler."""
    seen: list[tuple[str | None, int | None]] = []

    async def continuation(details: Any) -> None:
        seen.append((context.request_id.get(), context.user_id.get()))

    async def serve(metadata: tuple[tuple[str, str], ...]) -> None:
        details = type("Details", (), {"method": "/x.Y/Z", "invocation_metadata": metadata})()
        await context.RequestIdInterceptor().intercept_service(continuation, details)  # type: ignore[arg-type]

    context.request_id.set("req_stale")
    for metadata in [(("x-request-id", "req_" + "b" * 32), ("x-user-id", "7")), (),
                     (("x-request-id", "a\nb"), ("x-user-id", "-1")), (("x-user-id", "9" * 20),)]:
        await asyncio.create_task(serve(metadata))
    await serve((("x-request-id", "req_c"),))
    assert seen == [("req_" + "b" * 32, 7), (None, None), (None, None), (None, None), ("req_c", None)]
