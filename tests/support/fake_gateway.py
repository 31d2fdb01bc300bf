"""An in-process stand-in for ai_gateway's GenerateText, so runs' explanation flow is tested over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.common.v1 import common_pb2
from services.common.catalog import callers_of
from services.common.config import ServiceSettings
from services.common.errors import CustodyError
from services.common.identity import AccessTable, allow
from services.common.server import Service


@dataclass
class ScriptedGateway:
    """What the stand-in answers: fixed content, or `answer(request)` per call; optionally slow or failing."""

    content: str = "The run was allowed: every feature is wider than the tool."
    answer: Callable[[gateway_pb2.GenerateTextRequest], str] | None = None
    delay_s: float = 0.0
    fail_with: CustodyError | None = None
    prompts: list[str] = field(default_factory=list)
    requests: list[gateway_pb2.GenerateTextRequest] = field(default_factory=list)


class _Servicer(gateway_pb2_grpc.AiGatewayServiceServicer):
    def __init__(self, script: ScriptedGateway) -> None:
        self.script = script

    async def GenerateText(
        self, request: gateway_pb2.GenerateTextRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GenerateTextResponse:
        self.script.prompts.append(request.prompt)
        self.script.requests.append(request)
        await asyncio.sleep(self.script.delay_s)
        if self.script.fail_with is not None:
            raise self.script.fail_with
        content = self.script.answer(request) if self.script.answer else self.script.content
        envelope = common_pb2.ProvenanceEnvelope(
            call=f"calls/call_{len(self.script.prompts):032x}",
            provider="local",
            model="local-explainer",
            engine_version="fake-gateway/1",
            operation=request.operation,
            category=request.category,
        )
        return gateway_pb2.GenerateTextResponse(content=content, envelope=envelope)


def fake_gateway(script: ScriptedGateway) -> object:
    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        servicer = _Servicer(script)
        return Service(
            full_name="custody.ai_gateway.v1.AiGatewayService",
            register=lambda server: gateway_pb2_grpc.add_AiGatewayServiceServicer_to_server(servicer, server),
            access=AccessTable("ai_gateway", {"GenerateText": allow(services=callers_of("ai_gateway"))}),
        )

    return build
