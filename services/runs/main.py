"""Wires the runs service for the shared bootstrap: `custody serve runs`."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.runs.v1 import runs_pb2_grpc
from services.common.catalog import SERVICES
from services.common.config import ServiceSettings
from services.common.db import create_engine
from services.common.server import Service
from services.runs.access import ACCESS
from services.runs.config import RunsSettings
from services.runs.servicer import RunsServicer

SETTINGS = RunsSettings


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, RunsSettings)
    servicer = RunsServicer()

    def register(server: grpc.aio.Server) -> None:
        runs_pb2_grpc.add_RunsServiceServicer_to_server(servicer, server)

    engine = create_engine(settings.resolved_database_url)
    return Service(engine=engine, full_name=SERVICES["runs"].full_name, register=register, access=ACCESS)
