"""LineageService: translates between proto and domain, nothing else. The ledger RPCs are the shared ones
(services/common/ledger/rpc.py).

Blocking work (database, schema validation, graph traversal) runs in a worker thread so the event loop keeps
serving; asyncio.to_thread copies the call's context, so the domain sees the same request id and principal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from custody.common.v1 import common_pb2, ledger_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from custody.lineage.v1 import lineage_pb2_grpc
from services.common.ledger import rpc
from services.common.ledger.ledger import Ledger
from services.common.protomap import service_info, struct_to_dict
from services.lineage import convert
from services.lineage.domain.service import Lineage
from services.lineage.domain.witness import Witnessing

T = TypeVar("T")


async def _run(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(self, lineage: Lineage, witnessing: Witnessing, ledger: Ledger | None = None) -> None:
        self.lineage = lineage
        self._witnessing = witnessing
        self._ledger = ledger

    async def GetServiceInfo(
        self, request: pb.GetServiceInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.ServiceInfo:
        return service_info("lineage")

    async def RegisterType(
        self, request: pb.RegisterTypeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ArtifactType:
        definition = convert.type_from_proto(request)
        stored = await _run(lambda: self.lineage.register_type(definition, request.request_id))
        return convert.type_to_proto(stored)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Policy:
        view = await _run(lambda: self.lineage.get_policy(request.name))
        return convert.policy_to_proto(view.policy, view.types)

    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPoliciesResponse:
        views = await _run(self.lineage.list_policies)
        return pb.ListPoliciesResponse(policies=[convert.policy_to_proto(v.policy, v.types) for v in views])

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListProjectsResponse:
        projects, token = await _run(lambda: self.lineage.list_projects(request.page_size, request.page_token))
        return pb.ListProjectsResponse(projects=[convert.project_to_proto(p) for p in projects], next_page_token=token)

    async def CreateVersion(
        self, request: pb.CreateVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateVersionResponse:
        metadata = convert.metadata_from_proto(request.metadata)
        data = struct_to_dict(request.data, "data")
        requested_by = convert.requested_by_from_proto(request)
        created = await _run(
            lambda: self.lineage.create_version(
                request.parent, data, metadata, list(request.upstream), request.request_id, requested_by
            )
        )
        return pb.CreateVersionResponse(
            version=convert.version_to_proto(created.version),
            marked_stale=created.marked_stale,
            replayed=created.replayed,
            staleness=rpc.entry(created.staleness),
        )

    async def GetVersion(
        self, request: pb.GetVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Version:
        return convert.version_to_proto(await _run(lambda: self.lineage.get_version(request.name)))

    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListVersionsResponse:
        statuses = convert.statuses_from_proto(request.statuses)
        versions, token = await _run(
            lambda: self.lineage.list_versions(request.parent, request.page_size, request.page_token, statuses)
        )
        return pb.ListVersionsResponse(versions=[convert.version_to_proto(v) for v in versions], next_page_token=token)

    async def DiffVersions(
        self, request: pb.DiffVersionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DiffVersionsResponse:
        base, target, result = await _run(lambda: self.lineage.diff(request.base, request.target))
        return convert.diff_to_proto(base, target, result)

    async def Approve(self, request: pb.ApproveRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Version:
        version = await _run(
            lambda: self.lineage.approve(request.name, request.rationale, request.request_id, request.validate_only)
        )
        return convert.version_to_proto(version)

    async def Flag(self, request: pb.FlagRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Version:
        version = await _run(lambda: self.lineage.flag(request.name, request.rationale, request.request_id))
        return convert.version_to_proto(version)

    async def Reject(self, request: pb.RejectRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Version:
        version = await _run(lambda: self.lineage.reject(request.name, request.rationale, request.request_id))
        return convert.version_to_proto(version)

    async def AssessHealth(
        self, request: pb.AssessHealthRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Version:
        health = convert.HEALTH_FROM_PROTO.get(request.health)
        version = await _run(
            lambda: self.lineage.assess_health(
                request.name, health, request.rationale, request.expected_revision, request.request_id
            )
        )
        return convert.version_to_proto(version)

    async def ListStale(
        self, request: pb.ListStaleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListStaleResponse:
        versions, token = await _run(
            lambda: self.lineage.list_stale(request.parent, request.page_size, request.page_token)
        )
        return pb.ListStaleResponse(versions=[convert.version_to_proto(v) for v in versions], next_page_token=token)

    async def GetUpstream(
        self, request: pb.GetUpstreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LineageResponse:
        page, token = await _run(
            lambda: self.lineage.closure(request.name, False, request.max_depth, request.page_size, request.page_token)
        )
        return convert.closure_to_proto(page, token)

    async def GetDownstream(
        self, request: pb.GetDownstreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LineageResponse:
        page, token = await _run(
            lambda: self.lineage.closure(request.name, True, request.max_depth, request.page_size, request.page_token)
        )
        return convert.closure_to_proto(page, token)

    async def BuildPlan(self, request: pb.BuildPlanRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Plan:
        plan = await _run(lambda: self.lineage.build_plan(request.policy, list(request.selected_jobs)))
        return convert.plan_to_proto(plan)

    async def WitnessCheckpoint(
        self, request: pb.WitnessCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.WitnessedCheckpoint:
        kept = await asyncio.to_thread(
            self._witnessing.present, request.note, request.old_size, list(request.consistency_proof)
        )
        return convert.witnessed_to_proto(kept)

    async def ListWitnessedCheckpoints(
        self, request: pb.ListWitnessedCheckpointsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListWitnessedCheckpointsResponse:
        kept = await asyncio.to_thread(self._witnessing.witnessed)
        return pb.ListWitnessedCheckpointsResponse(checkpoints=[convert.witnessed_to_proto(k) for k in kept])

    async def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.SignedCheckpoint:
        return await rpc.get_checkpoint(rpc.require(self._ledger), request)

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.InclusionProof:
        return await rpc.get_inclusion_proof(rpc.require(self._ledger), request)

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.ConsistencyProof:
        return await rpc.get_consistency_proof(rpc.require(self._ledger), request)
