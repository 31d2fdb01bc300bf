"""An in-process stand-in for lineage's CreateVersion/GetVersion, recording what it receives. GetVersion answers
the versions the script holds (data by name), NOT_FOUND for any other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from services.common import call_context
from services.common.catalog import callers_of
from services.common.config import ServiceSettings
from services.common.errors import CustodyError, NotFound
from services.common.identity import AccessTable, allow
from services.common.server import Service


@dataclass
class ScriptedLineage:
    refuse_with: CustodyError | None = None
    requests: list[lineage_pb2.CreateVersionRequest] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # idempotency key -> version name
    existing: dict[str, dict[str, Any]] = field(default_factory=dict)  # version name -> data, for GetVersion

    @property
    def distinct_keys(self) -> set[str]:
        return {r.request_id for r in self.requests}


class _Servicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(self, script: ScriptedLineage) -> None:
        self.script = script

    async def CreateVersion(
        self, request: lineage_pb2.CreateVersionRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.CreateVersionResponse:
        self.script.requests.append(request)
        self.script.request_ids.append(call_context.request_id() or "")
        if self.script.refuse_with is not None:
            raise self.script.refuse_with
        replayed = request.request_id in self.script.versions
        name = self.script.versions.setdefault(
            request.request_id, f"{request.parent}/versions/{len(self.script.versions) + 1}"
        )
        return lineage_pb2.CreateVersionResponse(version=lineage_pb2.Version(name=name), replayed=replayed)

    async def GetVersion(
        self, request: lineage_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Version:
        data = self.script.existing.get(request.name)
        if data is None:
            raise NotFound("VERSION_NOT_FOUND", f"{request.name} does not exist")
        version = lineage_pb2.Version(name=request.name)
        version.data.update(data)
        return version


def fake_lineage(script: ScriptedLineage) -> object:
    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        servicer = _Servicer(script)
        rule = allow(services=callers_of("lineage"))
        return Service(
            full_name="custody.lineage.v1.LineageService",
            register=lambda server: lineage_pb2_grpc.add_LineageServiceServicer_to_server(servicer, server),
            access=AccessTable("lineage", {"CreateVersion": rule, "GetVersion": rule}),
        )

    return build
