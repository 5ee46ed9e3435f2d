"""`python -m devstack.healthcheck HOST:PORT [IDENTITY]`: exit 0 when that gRPC server reports SERVING
(containers).

It sends no service token on purpose: `grpc.health.v1.Health` is the one service exempt from it
(`common.service_auth`), so probes work without access to the secret. With TLS on (FSG_TLS_*), the port
speaks only mutual TLS, so the probe presents a certificate: IDENTITY's from FSG_TLS_DIR (default
`operator`), or FSG_TLS_CERT/FSG_TLS_KEY as given; a container probing its own service passes its own name.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.settings import CommonSettings
from common.tls import TlsConfigError, load_tls, probe_channel


def main() -> int:
    identity = sys.argv[2] if len(sys.argv) > 2 else "operator"
    try:
        tls = load_tls(CommonSettings(), identity)
    except TlsConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with probe_channel(sys.argv[1], tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return 1
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
