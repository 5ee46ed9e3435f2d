"""PrepareBatch over gRPC: each item answered as its own Prepare would be, a bad item failing nothing else."""

from __future__ import annotations

import grpc

from protos import generation_pb2, generation_pb2_grpc
from tests.generation.test_endpoints import STORY
from tests.helpers import structure_request
from tests.stack import Stack


async def test_prepare_batch_answers_each_item(stack: Stack) -> None:
    def structure(template: str, model: str = "") -> generation_pb2.GenerateRequest:
        return structure_request(7, STORY, template, model=model, request_id=f"req_batch_{template}")

    async with stack.channel("generation") as channel:
        generation = generation_pb2_grpc.GenerationStub(channel)
        single = await generation.Prepare(structure("three-act"))
        reply = await generation.PrepareBatch(generation_pb2.PrepareBatchRequest(items=[
            structure("three-act"), structure("no-such-template"), structure("three-act", model="gpt-4"),
            generation_pb2.GenerateRequest(user_id=7, request_id="req_pp", plot_points=generation_pb2.PlotPointsRequest(
                project_path="no-such-project-0000", act_key="setup")),
        ]))
    ok, template, model, project = reply.items
    assert ok.status.code == 0 and ok.response == single
    assert template.status.code == grpc.StatusCode.NOT_FOUND.value[0] and "no-such-template" in template.status.message
    assert model.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert project.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert not template.HasField("response") and not project.HasField("response")
