"""The gateway benchmark's floor: a bare gRPC server whose GenerateText only forwards to the provider.

Same proto, same event loop (uvloop), same provider class and SDK path as ai_gateway, and nothing else: no
authentication, safety checks, pricing, audit row, log line or span. What it adds over a direct call is what any
Python gRPC gateway in front of the SDK pays before it governs anything; ai_gateway's added latency minus this is
the cost of governance. Not a service: the benchmark starts it, reads its port from stdout, and closes its stdin
to stop it.

Usage: python -m bench.gateway.floor_server <provider base URL>
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import uvloop

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.ai_gateway.transport.base import Message, ProviderRequest
from services.ai_gateway.transport.openai_provider import OpenAIProvider


class ForwardOnly(gateway_pb2_grpc.AiGatewayServiceServicer):
    def __init__(self, provider: OpenAIProvider) -> None:
        self._provider = provider

    async def GenerateText(
        self, request: gateway_pb2.GenerateTextRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GenerateTextResponse:
        answer = await self._provider.complete(
            ProviderRequest(
                operation=request.operation,
                model=request.model,
                messages=(Message("user", request.prompt),),
                temperature=0.7,
                max_tokens=256,
                variant_seed="",
                response_schema=None,
            ),
            timeout_s=30,
        )
        return gateway_pb2.GenerateTextResponse(content=answer.content)


async def serve(base_url: str) -> None:
    provider = OpenAIProvider(
        api_key="sk-floor",
        base_url=base_url,
        model="gpt-4o-mini",
        connect_timeout_s=5,
        timeout_s=30,
        max_connections=64,
    )
    server = grpc.aio.server()
    gateway_pb2_grpc.add_AiGatewayServiceServicer_to_server(ForwardOnly(provider), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    # Runs until the benchmark closes stdin (or exits).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)
    await provider.close()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1]))
