"""`python -m devstack.healthcheck HOST:PORT`: exit 0 when that gRPC server reports SERVING (containers).

It sends no service token on purpose: `grpc.health.v1.Health` is the one service exempt from it
(`common.service_auth`), so probes work without access to the secret.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    with grpc.insecure_channel(sys.argv[1]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return 1
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
