"""ArtStudioService: translates between proto and domain, nothing else."""

from __future__ import annotations

import grpc

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.common.v1 import common_pb2
from services.common.protomap import service_info


class ArtStudioServicer(art_studio_pb2_grpc.ArtStudioServiceServicer):
    async def GetServiceInfo(
        self, request: art_studio_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        return service_info("art_studio")
