"""RunsService: translates between proto and the runs domain, nothing else. Each RPC converts its request
(convert.py), makes one domain call and converts the answer back; UploadAttachment also unframes its stream
(header first, then chunks). Blocking domain work runs in worker threads (asyncio.to_thread copies the call
context, so the domain still sees the caller and request id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from custody.common.v1 import common_pb2, ledger_pb2
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common import call_context
from services.common.errors import FieldViolation, InvalidArgument
from services.common.ledger import rpc as ledger_rpc
from services.common.ledger.ledger import Ledger
from services.common.protomap import service_info
from services.runs import convert
from services.runs.domain.service import Runs


def _invalid(reason: str, problems: list[tuple[str, str]]) -> InvalidArgument:
    return InvalidArgument(
        reason,
        f"{len(problems)} invalid field(s): " + ", ".join(field for field, _ in problems),
        violations=[FieldViolation(field, description) for field, description in problems],
    )


class RunsServicer(runs_pb2_grpc.RunsServiceServicer):
    def __init__(self, runs: Runs, ledger: Ledger | None = None) -> None:
        self._runs = runs
        self._ledger = ledger

    async def GetServiceInfo(
        self, request: runs_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.ServiceInfo:
        return service_info("runs")

    async def CreateRun(
        self, request: runs_pb2.CreateRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.Run:
        problems = convert.enum_violations(request.run)
        if problems:
            raise _invalid("RUN_INVALID", problems)
        record = await self._runs.create_run(
            convert.content_from_proto(request.run),
            request.request_id,
            convert.imported_advisories(request.run, call_context.require_principal()),
            convert.imported_explanation(request.run),
            legacy_migration=request.legacy_migration,
        )
        return convert.run_to_proto(record)

    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.Run:
        return convert.run_to_proto(await asyncio.to_thread(self._runs.get_run, request.name))

    async def ListRuns(
        self, request: runs_pb2.ListRunsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.ListRunsResponse:
        filters, problems = convert.filters_from_proto(request)
        if problems:
            raise _invalid("FILTER_INVALID", problems)
        page = await asyncio.to_thread(self._runs.list_runs, filters, request.page_size, request.page_token)
        return convert.runs_page_to_proto(page)

    async def UploadAttachment(
        self,
        request_iterator: AsyncIterator[runs_pb2.UploadAttachmentRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> runs_pb2.Attachment:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            raise _invalid("ATTACHMENT_INVALID", [("header", "the stream carried no header")])
        if not first.HasField("header"):
            raise _invalid("ATTACHMENT_INVALID", [("header", "the first message must be the header")])
        header = first.header

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.HasField("header"):
                    raise _invalid("ATTACHMENT_INVALID", [("header", "send the header once, first")])
                yield message.chunk  # every read of the field copies it: once

        record = await self._runs.upload(convert.attachment_request(header), chunks(), header.sha256, header.request_id)
        return convert.attachment_to_proto(record)

    async def BatchCreateAttachments(
        self, request: runs_pb2.BatchCreateAttachmentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.BatchCreateAttachmentsResponse:
        items = [(convert.new_attachment_request(request.run, item), item.data) for item in request.attachments]
        records = await asyncio.to_thread(self._runs.batch_create_attachments, request.run, items, request.request_id)
        return convert.batch_to_proto(records)

    async def FindMissingBlobs(
        self, request: runs_pb2.FindMissingBlobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.FindMissingBlobsResponse:
        missing = await asyncio.to_thread(self._runs.find_missing_blobs, list(request.sha256))
        return runs_pb2.FindMissingBlobsResponse(missing_sha256=missing)

    async def ReadAttachment(
        self, request: runs_pb2.ReadAttachmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[runs_pb2.ReadAttachmentResponse]:
        content = await asyncio.to_thread(self._runs.read_attachment, request.name, request.signed)
        yield runs_pb2.ReadAttachmentResponse(attachment=convert.attachment_to_proto(content.record))
        while chunk := await asyncio.to_thread(next, content.chunks, b""):
            yield runs_pb2.ReadAttachmentResponse(chunk=chunk)

    async def ListAttachments(
        self, request: runs_pb2.ListAttachmentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.ListAttachmentsResponse:
        page = await asyncio.to_thread(
            self._runs.list_attachments,
            request.run,
            request.kind,
            request.latest_only,
            request.page_size,
            request.page_token,
        )
        return convert.attachments_page_to_proto(page)

    async def AttachAdvisory(
        self, request: runs_pb2.AttachAdvisoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.Run:
        kind = convert.ADVISORY_KIND_IN.get(request.kind)
        if kind is None:
            raise _invalid("ADVISORY_INVALID", [("kind", "explanation, advisory, note or unknown")])
        record = await asyncio.to_thread(
            self._runs.attach_advisory,
            request.run,
            request.advisory_id,
            kind,
            request.engine_id,
            request.engine_version,
            request.summary,
        )
        return convert.run_to_proto(record)

    async def ListAdvisories(
        self, request: runs_pb2.ListAdvisoriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.ListAdvisoriesResponse:
        page = await asyncio.to_thread(self._runs.list_advisories, request.run, request.page_size, request.page_token)
        return convert.advisories_page_to_proto(page)

    async def SuggestExplanation(
        self, request: runs_pb2.SuggestExplanationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.Run:
        return convert.run_to_proto(await self._runs.suggest_explanation(request.name))

    async def ReviewExplanation(
        self, request: runs_pb2.ReviewExplanationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.Run:
        decision = convert.REVIEW_DECISION_IN.get(request.decision)
        if decision is None:
            raise _invalid(
                "REVIEW_DECISION_INVALID", [("decision", "REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT")]
            )
        record = await asyncio.to_thread(
            self._runs.review_explanation, request.run, decision, request.rationale, request.expected_version
        )
        return convert.run_to_proto(record)

    async def BindCandidate(
        self, request: runs_pb2.BindCandidateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.BindCandidateResponse:
        return convert.bind_result_to_proto(await self._runs.bind_candidate(convert.bind_request(request)))

    async def DiffRuns(
        self, request: runs_pb2.DiffRunsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.DiffRunsResponse:
        differences = await asyncio.to_thread(
            self._runs.diff_runs, request.left, request.right, request.score_drift_threshold
        )
        return convert.differences_to_proto(differences)

    async def VerifyRun(
        self, request: runs_pb2.VerifyRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.VerifyRunResponse:
        return convert.verification_to_proto(await asyncio.to_thread(self._runs.verify_run, request.name))

    async def WithdrawMigrationBatch(
        self, request: runs_pb2.WithdrawMigrationBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> runs_pb2.WithdrawMigrationBatchResponse:
        result = await asyncio.to_thread(self._runs.withdraw_migration_batch, request.batch, request.reason)
        return convert.withdraw_result_to_proto(result)

    # ---- the ledger (services/common/ledger/rpc.py answers for all three authorities) ------------------------------

    async def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.SignedCheckpoint:
        return await ledger_rpc.get_checkpoint(ledger_rpc.require(self._ledger), request)

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.InclusionProof:
        return await ledger_rpc.get_inclusion_proof(ledger_rpc.require(self._ledger), request)

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.ConsistencyProof:
        return await ledger_rpc.get_consistency_proof(ledger_rpc.require(self._ledger), request)
