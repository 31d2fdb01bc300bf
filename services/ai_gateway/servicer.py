"""AiGatewayService: translates between proto and domain, nothing else."""

from __future__ import annotations

import grpc

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.common.v1 import common_pb2
from services.common.protomap import service_info


class AiGatewayServicer(gateway_pb2_grpc.AiGatewayServiceServicer):
    async def GetServiceInfo(
        self, request: gateway_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        return service_info("ai_gateway")
