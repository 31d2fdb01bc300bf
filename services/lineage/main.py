"""Wires the lineage service for the shared bootstrap: `custody serve lineage`."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.lineage.v1 import lineage_pb2_grpc
from services.common.catalog import SERVICES
from services.common.config import ServiceSettings
from services.common.db import create_engine
from services.common.server import Service
from services.lineage.access import ACCESS
from services.lineage.config import LineageSettings
from services.lineage.servicer import LineageServicer

SETTINGS = LineageSettings


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, LineageSettings)
    servicer = LineageServicer()

    def register(server: grpc.aio.Server) -> None:
        lineage_pb2_grpc.add_LineageServiceServicer_to_server(servicer, server)

    engine = create_engine(settings.resolved_database_url)
    return Service(engine=engine, full_name=SERVICES["lineage"].full_name, register=register, access=ACCESS)
