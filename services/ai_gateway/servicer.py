"""AiGatewayService: translates between proto and domain, nothing else (conversions in convert.py; the ledger RPCs
in services/common/ledger/rpc.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.common.v1 import common_pb2, ledger_pb2
from services.ai_gateway import convert
from services.ai_gateway.domain.gateway import Gateway
from services.common.ledger import rpc as ledger_rpc
from services.common.ledger.ledger import Ledger
from services.common.protomap import service_info


class AiGatewayServicer(gateway_pb2_grpc.AiGatewayServiceServicer):
    def __init__(self, gateway: Gateway, ledger: Ledger | None = None) -> None:
        self._gateway = gateway
        self._ledger = ledger

    async def GetServiceInfo(
        self, request: gateway_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.ServiceInfo:
        return service_info("ai_gateway")

    async def GenerateText(
        self, request: gateway_pb2.GenerateTextRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.GenerateTextResponse:
        return convert.generate_response(await self._gateway.generate(convert.text_request(request)))

    async def StreamText(
        self, request: gateway_pb2.StreamTextRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gateway_pb2.StreamTextResponse]:
        async for item in self._gateway.stream(convert.text_request(request)):
            yield convert.stream_response(item)

    async def GenerateImage(
        self, request: gateway_pb2.GenerateImageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gateway_pb2.GenerateImageResponse]:
        for response in convert.image_responses(await self._gateway.generate_image(convert.image_request(request))):
            yield response

    async def GetCall(
        self, request: gateway_pb2.GetCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.Call:
        return convert.call_proto(await self._gateway.get_call(request.name))

    async def ListCalls(
        self, request: gateway_pb2.ListCallsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.ListCallsResponse:
        page = await self._gateway.list_calls(convert.list_filters(request), request.page_size, request.page_token)
        return gateway_pb2.ListCallsResponse(
            calls=[convert.call_proto(call) for call in page.calls],
            next_page_token=page.next_page_token,
        )

    async def GetPolicy(
        self, request: gateway_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.Policy:
        return convert.policy_proto(self._gateway)

    # ---- the ledger (services/common/ledger/rpc.py answers for all three authorities) ------------------------------

    async def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.SignedCheckpoint:
        return await ledger_rpc.get_checkpoint(ledger_rpc.require(self._ledger), request)

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.InclusionProof:
        return await ledger_rpc.get_inclusion_proof(ledger_rpc.require(self._ledger), request)

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.ConsistencyProof:
        return await ledger_rpc.get_consistency_proof(ledger_rpc.require(self._ledger), request)
