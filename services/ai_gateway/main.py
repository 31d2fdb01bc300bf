"""Wires the ai_gateway service for the shared bootstrap: `custody serve ai_gateway`."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.ai_gateway.v1 import gateway_pb2_grpc
from services.ai_gateway.access import ACCESS
from services.ai_gateway.config import AiGatewaySettings
from services.ai_gateway.servicer import AiGatewayServicer
from services.common.catalog import SERVICES
from services.common.config import ServiceSettings
from services.common.db import create_engine
from services.common.server import Service

SETTINGS = AiGatewaySettings


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, AiGatewaySettings)
    servicer = AiGatewayServicer()

    def register(server: grpc.aio.Server) -> None:
        gateway_pb2_grpc.add_AiGatewayServiceServicer_to_server(servicer, server)

    engine = create_engine(settings.resolved_database_url)
    return Service(engine=engine, full_name=SERVICES["ai_gateway"].full_name, register=register, access=ACCESS)
