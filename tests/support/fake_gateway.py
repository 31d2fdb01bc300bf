"""An in-process stand-in for ai_gateway's GenerateText and GenerateImage, so runs' explanation flow and
art_studio's candidates are tested over real gRPC with answers (and failures) a test scripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.common.v1 import common_pb2, ledger_pb2
from services.ai_gateway.transport.png import encode_png
from services.common.catalog import callers_of
from services.common.config import ServiceSettings
from services.common.errors import CustodyError
from services.common.hashing import sha256_bytes
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
    image_fail_with: CustodyError | None = None
    image_requests: list[gateway_pb2.GenerateImageRequest] = field(default_factory=list)
    # Sent instead of the image's real sha256 in its descriptor (a gateway that lies about what it sends).
    image_claimed_sha256: str = ""


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
        return gateway_pb2.GenerateTextResponse(
            content=content, envelope=envelope, ledger=ledger_pb2.LedgerEntry(leaf_index=len(self.script.prompts))
        )

    async def GenerateImage(
        self, request: gateway_pb2.GenerateImageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.GenerateImageResponse]:
        self.script.image_requests.append(request)
        if self.script.image_fail_with is not None:
            raise self.script.image_fail_with
        shade = len(self.script.image_requests) % 256
        image = encode_png(4, 4, [bytes([shade, 64, 128]) * 4] * 4)
        digest = self.script.image_claimed_sha256 or sha256_bytes(image)
        envelope = common_pb2.ProvenanceEnvelope(
            call=f"calls/call_{len(self.script.image_requests) + 1000:032x}",
            provider="local",
            model="local-image",
            operation=request.operation,
            category=request.category,
            request_id=request.request_id,
            image_sha256=[digest],
        )
        descriptor = gateway_pb2.ImageDescriptor(
            index=0, media_type="image/png", sha256=digest, size_bytes=len(image), width=4, height=4
        )
        metadata = gateway_pb2.ImageMetadata(envelope=envelope, images=[descriptor])
        yield gateway_pb2.GenerateImageResponse(metadata=metadata)
        yield gateway_pb2.GenerateImageResponse(chunk=gateway_pb2.ImageChunk(index=0, data=image))


def fake_gateway(script: ScriptedGateway) -> object:
    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        servicer = _Servicer(script)
        return Service(
            full_name="custody.ai_gateway.v1.AiGatewayService",
            register=lambda server: gateway_pb2_grpc.add_AiGatewayServiceServicer_to_server(servicer, server),
            access=AccessTable(
                "ai_gateway",
                {
                    "GenerateText": allow(services=callers_of("ai_gateway")),
                    "GenerateImage": allow(services=callers_of("ai_gateway")),
                },
            ),
        )

    return build
