"""RunsService: translates between proto and domain, nothing else."""

from __future__ import annotations

import grpc

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.protomap import service_info


class RunsServicer(runs_pb2_grpc.RunsServiceServicer):
    async def GetServiceInfo(
        self, request: runs_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        return service_info("runs")
