"""LineageService: translates between proto and domain, nothing else."""

from __future__ import annotations

import grpc

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from services.common.protomap import service_info


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    async def GetServiceInfo(
        self, request: lineage_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        return service_info("lineage")
