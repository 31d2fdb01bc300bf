"""The studio's gRPC adapters to ai_gateway, runs and lineage (addresses and tokens from the client factory).

They translate answers into the studio's terms: a problem with one variant is VariantFailed; a peer that cannot
be reached at all, or a run or parent that does not exist, is a request-level CustodyError.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc
from google.protobuf import json_format

from custody.ai_gateway.v1 import gateway_pb2
from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2
from services.art_studio.studio import (
    CATEGORY,
    IMAGE_OPERATION,
    IMAGE_SIZE,
    OPERATION,
    SYSTEM_PROMPT,
    AssetCredentials,
    CandidateFile,
    GatewayAnswer,
    ImageAnswer,
    VariantFailed,
)
from services.common import call_context, status
from services.common.clients import ServiceClients
from services.common.errors import FieldViolation, NotFound, PermissionDenied, Unavailable
from services.common.gateway_images import ImageStreamError
from services.common.hashing import sha256_canonical
from services.common.protomap import dict_to_struct, on_behalf_of_caller, principal_to_proto
from services.rosette.compiler import COMPILER_VERSION
from services.rosette.lineage_types import SVG_CANDIDATE

SESSION_MODE = "design_session"
SESSION_PURPOSE = "design session holding candidate attachments"
# Unreviewed AI output: a neutral prior, not a measured confidence (the reviewer's approval is what counts).
AI_CANDIDATE_CONFIDENCE = 0.5
# What a caller is told to wait before retrying when a peer could not be reached (RetryInfo).
DEPENDENCY_RETRY_AFTER_S = 2.0


def _unreachable(service: str, decoded: status.DecodedError) -> Unavailable:
    return Unavailable(
        "DEPENDENCY_UNAVAILABLE",
        f"{service} could not be reached ({decoded.code.name}: {decoded.message}); check `custody health`",
        metadata={"service": service},
        retry_after_s=DEPENDENCY_RETRY_AFTER_S,
    )


def _is_unreachable(decoded: status.DecodedError) -> bool:
    """Our services always attach an ErrorInfo reason; a bare UNAVAILABLE comes from the transport."""
    return decoded.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not decoded.reason


def _variant_failure(prefix: str, decoded: status.DecodedError) -> VariantFailed:
    return VariantFailed(
        decoded.reason or prefix,
        f"{decoded.code.name}: {decoded.message}",
        [FieldViolation(v.field, v.description) for v in decoded.violations]
        + [FieldViolation(f"error_info.{k}", v) for k, v in sorted(decoded.metadata.items())],
    )


def _credentials(credentials: AssetCredentials | None) -> runs_pb2.ContentCredentialsRequest | None:
    if credentials is None:
        return None
    return runs_pb2.ContentCredentialsRequest(
        source=(
            runs_pb2.ASSET_SOURCE_COMPILED_FROM_MODEL_OUTPUT
            if credentials.compiled
            else runs_pb2.ASSET_SOURCE_MODEL_OUTPUT
        ),
        provider=credentials.provider,
        model=credentials.model,
        ai_call=credentials.ai_call,
        ai_request_id=credentials.ai_request_id,
        ai_ledger_leaf_index=credentials.ai_ledger_leaf_index,
    )


class GrpcPeers:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def generate_spec(
        self, prompt: str, seed: str, provider: str, model: str, schema: str, request_id: str
    ) -> GatewayAnswer:
        request = gateway_pb2.GenerateTextRequest(
            operation=OPERATION,
            category=CATEGORY,
            provider=provider,
            model=model,
            prompt=prompt,
            system_prompt=SYSTEM_PROMPT,
            variant_seed=seed,
            response_json_schema=schema,
            request_id=request_id,
            on_behalf_of=on_behalf_of_caller(),
        )
        try:
            response = await self._clients.stub("ai_gateway").GenerateText(request)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if _is_unreachable(decoded):
                raise _unreachable("ai_gateway", decoded) from None
            raise _variant_failure("GATEWAY_FAILED", decoded) from None
        return GatewayAnswer(
            content=response.content,
            envelope=json_format.MessageToDict(response.envelope, preserving_proto_field_name=True),
            cost=json_format.MessageToDict(response.cost, preserving_proto_field_name=True),
            ledger_leaf_index=response.ledger.leaf_index if response.HasField("ledger") else None,
        )

    async def generate_image(self, prompt: str, seed: str, request_id: str) -> ImageAnswer:
        request = gateway_pb2.GenerateImageRequest(
            operation=IMAGE_OPERATION,
            category=CATEGORY,
            prompt=prompt,
            size=IMAGE_SIZE,
            count=1,
            seed=seed,
            request_id=request_id,
            on_behalf_of=on_behalf_of_caller(),
        )
        try:
            received = await self._clients.generate_image(request)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if _is_unreachable(decoded):
                raise _unreachable("ai_gateway", decoded) from None
            raise _variant_failure("IMAGE_FAILED", decoded) from None
        except ImageStreamError as exc:
            raise VariantFailed("IMAGE_FAILED", f"the gateway's image stream was refused: {exc}") from None
        if len(received.images) != 1:
            raise VariantFailed("IMAGE_FAILED", f"the gateway sent {len(received.images)} images for a request of one")
        ((descriptor, png),) = received.images
        return ImageAnswer(
            png=png,
            sha256=descriptor.sha256,
            envelope=json_format.MessageToDict(received.envelope, preserving_proto_field_name=True),
            cost=json_format.MessageToDict(received.cost, preserving_proto_field_name=True),
            ledger_leaf_index=received.ledger.leaf_index if received.ledger.ListFields() else None,  # absent: no ledger
        )

    async def require_run(self, run: str) -> None:
        try:
            await self._clients.stub("runs").GetRun(runs_pb2.GetRunRequest(name=run))
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if decoded.code is grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    "RUN_NOT_FOUND", f"run {run} does not exist; create it first", metadata={"run": run}
                ) from None
            if decoded.code is grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(
                    "RUN_NOT_OWNED",
                    f"art_studio attaches only to runs it created, and {run} is not one; ask for new_session",
                    metadata={"run": run},
                ) from None
            raise _unreachable("runs", decoded) from None

    async def create_session(self, summary: dict[str, Any], request_id: str) -> str:
        """A design-session run owned by art_studio, to hold the candidates' attachments until one is bound."""
        purpose = {"purpose": SESSION_PURPOSE, "compiler_version": COMPILER_VERSION}
        request = runs_pb2.CreateRunRequest(
            run=runs_pb2.RunInput(
                mode=SESSION_MODE,
                tool_id="art_studio",
                status=runs_pb2.RUN_STATUS_OK,
                request_summary=dict_to_struct(summary),
                feasibility=dict_to_struct(purpose),
                # A session decides nothing: the engine's verdicts are the runs minted by BindCandidate.
                decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=1.0),
                hashes=runs_pb2.Hashes(feasibility_sha256=sha256_canonical(purpose)),
                engine_version=COMPILER_VERSION,
            ),
            request_id=request_id,
        )
        try:
            response = await self._clients.stub("runs").CreateRun(request)
        except grpc.RpcError as exc:
            raise _unreachable("runs", status.decode(exc)) from None
        return str(response.name)

    async def require_version(self, version: str) -> None:
        try:
            await self._clients.stub("lineage").GetVersion(lineage_pb2.GetVersionRequest(name=version))
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if decoded.code is grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    "PARENT_NOT_FOUND",
                    f"lineage version {version} does not exist",
                    metadata={"lineage_parent": version},
                ) from None
            raise _unreachable("lineage", decoded) from None

    async def attach(self, run: str, files: list[CandidateFile], request_id: str) -> list[str]:
        request = runs_pb2.BatchCreateAttachmentsRequest(
            run=run,
            attachments=[
                runs_pb2.NewAttachment(
                    kind=f.kind,
                    filename=f.filename,
                    content_type=f.content_type,
                    data=f.data,
                    content_credentials=_credentials(f.credentials),
                )
                for f in files
            ],
            request_id=request_id,
        )
        try:
            response = await self._clients.stub("runs").BatchCreateAttachments(request)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            failure = _variant_failure("ATTACH_FAILED", decoded)
            failure.reason = "ATTACH_FAILED"
            failure.message = f"runs refused the attachments ({failure.message}); none of them was stored"
            raise failure from None
        return [a.name for a in response.attachments]

    async def record_candidate(
        self, parent: str, entity_suffix: str, data: dict[str, Any], cost: dict[str, Any], request_id: str
    ) -> str:
        project, parent_entity = parent.split("/")[1], parent.split("/")[4]
        content = dict_to_struct(data)
        metadata = lineage_pb2.VersionMetadata(
            intent="a rosette candidate for the design brief it derives from",
            rationale=f"generated by art_studio from the brief's prompt (seed {data.get('variant_seed', '')})",
            confidence=AI_CANDIDATE_CONFIDENCE,
            source=lineage_pb2.SOURCE_AI,
            producing_module="art_studio",
            producing_role=OPERATION,
            cost=json_format.ParseDict(cost, common_pb2.CostRecord()),
        )
        request = lineage_pb2.CreateVersionRequest(
            parent=f"projects/{project}/artifacts/{SVG_CANDIDATE}/{parent_entity}-{entity_suffix}",
            data=content,
            metadata=metadata,
            upstream=[parent],
            request_id=request_id,
            # Four eyes: whoever asked for the candidate cannot approve it either (lineage records who, not roles).
            requested_by=principal_to_proto(replace(call_context.require_principal(), roles=frozenset())),
        )
        try:
            response = await self._clients.stub("lineage").CreateVersion(request)
        except grpc.RpcError as exc:
            failure = _variant_failure("LINEAGE_FAILED", status.decode(exc))
            failure.reason = "LINEAGE_FAILED"
            raise failure from None
        return str(response.version.name)
