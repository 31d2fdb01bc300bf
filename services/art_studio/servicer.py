"""ArtStudioService: translates between proto and the studio, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.common.v1 import common_pb2
from services.art_studio import convert
from services.art_studio.studio import Studio, check_svg, compile_spec
from services.common.protomap import service_info


class ArtStudioServicer(art_studio_pb2_grpc.ArtStudioServiceServicer):
    def __init__(self, studio: Studio) -> None:
        self._studio = studio

    async def GetServiceInfo(
        self, request: art_studio_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.ServiceInfo:
        return service_info("art_studio")

    async def GenerateCandidates(
        self, request: art_studio_pb2.GenerateCandidatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.GenerateCandidatesResponse:
        return convert.generated_to_proto(await self._studio.generate(convert.generate_request(request)))

    async def CompileSpec(
        self, request: art_studio_pb2.CompileSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.CompileSpecResponse:
        return convert.compiled_to_proto(await asyncio.to_thread(compile_spec, request.spec_json))

    async def ValidateSvg(
        self, request: art_studio_pb2.ValidateSvgRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.ValidateSvgResponse:
        return convert.validation_to_proto(request.svg, await asyncio.to_thread(check_svg, request.svg))
