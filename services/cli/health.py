"""grpc.health.v1 checks, as `custody health`, container healthchecks and `custody up` use them."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.tls.credentials import ChannelSecurity


def check(address: str, service_full_name: str, timeout_s: float = 2.0, security: ChannelSecurity | None = None) -> str:
    """SERVING, NOT_SERVING, SERVICE_UNKNOWN, or UNREACHABLE when nothing answers (over TLS when `security` says,
    which also makes a server whose certificate the CA did not issue UNREACHABLE)."""
    if security is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, security.credentials())
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service_full_name), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
