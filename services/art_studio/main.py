"""Wires the art_studio service for the shared bootstrap: `custody serve art_studio`."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.art_studio.v1 import art_studio_pb2_grpc
from services.art_studio.access import ACCESS
from services.art_studio.config import ArtStudioSettings
from services.art_studio.peers import GrpcPeers
from services.art_studio.servicer import ArtStudioServicer
from services.art_studio.studio import Studio
from services.common.catalog import SERVICES
from services.common.clients import ServiceClients
from services.common.config import ServiceSettings
from services.common.server import Service

SETTINGS = ArtStudioSettings


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, ArtStudioSettings)
    clients = ServiceClients.for_service(settings, tracer_provider)
    servicer = ArtStudioServicer(Studio(GrpcPeers(clients)))

    def register(server: grpc.aio.Server) -> None:
        art_studio_pb2_grpc.add_ArtStudioServiceServicer_to_server(servicer, server)

    return Service(
        full_name=SERVICES["art_studio"].full_name, register=register, access=ACCESS, on_stop=(clients.close,)
    )
