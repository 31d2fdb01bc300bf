"""Proto <-> domain translation for the runs service (used by the servicer only)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2
from services.common.identity import Principal
from services.common.ledger import rpc as ledger_rpc
from services.common.protomap import datetime_from_proto, dict_to_struct, principal_to_proto, struct_to_dict
from services.runs import model
from services.runs.domain.attachments import AttachmentRequest
from services.runs.domain.binding import BindRequest, BindResult
from services.runs.domain.credentials import AssetSource, CredentialsRequest
from services.runs.domain.diff import Difference
from services.runs.domain.pages import Page
from services.runs.domain.verification import Verification
from services.runs.domain.withdrawals import WithdrawResult
from services.runs.store import RunFilters

RUN_STATUS = {
    model.RunStatus.OK: runs_pb2.RUN_STATUS_OK,
    model.RunStatus.BLOCKED: runs_pb2.RUN_STATUS_BLOCKED,
    model.RunStatus.ERROR: runs_pb2.RUN_STATUS_ERROR,
}
RISK = {
    model.RiskLevel.GREEN: runs_pb2.RISK_LEVEL_GREEN,
    model.RiskLevel.YELLOW: runs_pb2.RISK_LEVEL_YELLOW,
    model.RiskLevel.RED: runs_pb2.RISK_LEVEL_RED,
    model.RiskLevel.ERROR: runs_pb2.RISK_LEVEL_ERROR,
}
EXPLANATION = {
    model.ExplanationStatus.NONE: runs_pb2.EXPLANATION_STATUS_NONE,
    model.ExplanationStatus.PENDING: runs_pb2.EXPLANATION_STATUS_PENDING,
    model.ExplanationStatus.READY: runs_pb2.EXPLANATION_STATUS_READY,
    model.ExplanationStatus.ERROR: runs_pb2.EXPLANATION_STATUS_ERROR,
}
ADVISORY_KIND = {
    model.AdvisoryKind.EXPLANATION: runs_pb2.ADVISORY_KIND_EXPLANATION,
    model.AdvisoryKind.ADVISORY: runs_pb2.ADVISORY_KIND_ADVISORY,
    model.AdvisoryKind.NOTE: runs_pb2.ADVISORY_KIND_NOTE,
    model.AdvisoryKind.UNKNOWN: runs_pb2.ADVISORY_KIND_UNKNOWN,
}
REVIEW = {
    model.ReviewStatus.AUTO_APPROVED: runs_pb2.REVIEW_STATUS_AUTO_APPROVED,
    model.ReviewStatus.PENDING_REVIEW: runs_pb2.REVIEW_STATUS_PENDING_REVIEW,
    model.ReviewStatus.NOT_REQUIRED: runs_pb2.REVIEW_STATUS_NOT_REQUIRED,
    model.ReviewStatus.APPROVED: runs_pb2.REVIEW_STATUS_APPROVED,
    model.ReviewStatus.REJECTED: runs_pb2.REVIEW_STATUS_REJECTED,
}
REVIEW_IN = {value: key for key, value in REVIEW.items()}
REVIEW_DECISION_IN = {
    runs_pb2.REVIEW_DECISION_APPROVE: model.ReviewStatus.APPROVED,
    runs_pb2.REVIEW_DECISION_REJECT: model.ReviewStatus.REJECTED,
}
SEVERITY = {
    "INFO": runs_pb2.SEVERITY_INFO,
    "WARNING": runs_pb2.SEVERITY_WARNING,
    "CRITICAL": runs_pb2.SEVERITY_CRITICAL,
}


K = TypeVar("K")


def _reverse(mapping: Mapping[K, int]) -> dict[int, K]:
    return {v: k for k, v in mapping.items()}


RUN_STATUS_IN = _reverse(RUN_STATUS)
RISK_IN = _reverse(RISK)
EXPLANATION_IN = _reverse(EXPLANATION)
ADVISORY_KIND_IN = _reverse(ADVISORY_KIND)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def digest(sha256: str, size: int) -> common_pb2.Digest:
    return common_pb2.Digest(sha256=sha256, size_bytes=size)


def content_from_proto(run: runs_pb2.RunInput) -> model.RunContent:
    """Unknown enum values map to placeholders that validation reports with the field's path."""
    return model.RunContent(
        mode=run.mode,
        tool_id=run.tool_id,
        status=RUN_STATUS_IN.get(run.status, model.RunStatus.ERROR),
        decision=model.Decision(
            risk_level=RISK_IN.get(run.decision.risk_level, model.RiskLevel.ERROR),
            score=run.decision.score,
            block_reason=run.decision.block_reason,
            warnings=tuple(run.decision.warnings),
        ),
        hashes=model.Hashes(run.hashes.feasibility_sha256, run.hashes.toolpaths_sha256, run.hashes.gcode_sha256),
        request_summary=struct_to_dict(run.request_summary, "run.request_summary"),
        feasibility=struct_to_dict(run.feasibility, "run.feasibility"),
        outputs=dict(run.outputs),
        meta=struct_to_dict(run.meta, "run.meta"),
        engine_version=run.engine_version,
    )


def _content_fields(content: model.RunContent) -> dict[str, Any]:
    """The fields Run and RunInput share, in proto form."""
    return {
        "status": RUN_STATUS[content.status],
        "request_summary": dict_to_struct(content.request_summary),
        "feasibility": dict_to_struct(content.feasibility),
        "decision": runs_pb2.Decision(
            risk_level=RISK[content.decision.risk_level],
            score=content.decision.score,
            block_reason=content.decision.block_reason,
            warnings=list(content.decision.warnings),
        ),
        "hashes": runs_pb2.Hashes(
            feasibility_sha256=content.hashes.feasibility_sha256,
            toolpaths_sha256=content.hashes.toolpaths_sha256,
            gcode_sha256=content.hashes.gcode_sha256,
        ),
        "outputs": content.outputs,
        "meta": dict_to_struct(content.meta),
    }


def content_to_input(
    content: model.RunContent,
    advisories: list[runs_pb2.AdvisoryInput] | None = None,
    explanation: model.Explanation | None = None,
) -> runs_pb2.RunInput:
    """The RunInput that recreates `content` (legacy migration and import use it)."""
    run = runs_pb2.RunInput(
        mode=content.mode,
        tool_id=content.tool_id,
        **_content_fields(content),
        engine_version=content.engine_version,
        advisory_inputs=advisories or [],
    )
    if explanation is not None:
        run.explanation.CopyFrom(
            runs_pb2.Explanation(
                status=EXPLANATION[explanation.status], summary=explanation.summary, error=explanation.error
            )
        )
    return run


def enum_violations(run: runs_pb2.RunInput) -> list[tuple[str, str]]:
    """Enum fields left unspecified or out of range (proto3 cannot reject them itself)."""
    problems = []
    if run.status not in RUN_STATUS_IN:
        problems.append(("run.status", "required: RUN_STATUS_OK, RUN_STATUS_BLOCKED or RUN_STATUS_ERROR"))
    if run.decision.risk_level not in RISK_IN:
        problems.append(("run.decision.risk_level", "required: GREEN, YELLOW, RED or ERROR"))
    if run.HasField("explanation") and run.explanation.status not in EXPLANATION_IN:
        problems.append(("run.explanation.status", "NONE, PENDING, READY or ERROR"))
    for index, advisory in enumerate(run.advisory_inputs):
        if advisory.kind not in ADVISORY_KIND_IN:
            problems.append((f"run.advisory_inputs[{index}].kind", "explanation, advisory, note or unknown"))
    return problems


def imported_advisories(run: runs_pb2.RunInput, principal: Principal) -> list[model.AdvisoryLink]:
    links = []
    for index, advisory in enumerate(run.advisory_inputs):
        created = (
            datetime_from_proto(advisory.created_at, f"run.advisory_inputs[{index}].created_at")
            if advisory.HasField("created_at")
            else datetime.now(UTC)
        )
        links.append(
            model.AdvisoryLink(
                advisory_id=advisory.advisory_id,
                kind=ADVISORY_KIND_IN.get(advisory.kind, model.AdvisoryKind.UNKNOWN),
                engine_id=advisory.engine_id,
                engine_version=advisory.engine_version,
                summary=advisory.summary,
                review_status=model.ReviewStatus.NOT_REQUIRED,
                reviewed_by=None,
                stamp=model.Stamp(created, principal, advisory.request_id, ""),
            )
        )
    return links


def imported_explanation(run: runs_pb2.RunInput) -> model.Explanation | None:
    if not run.HasField("explanation"):
        return None
    status = EXPLANATION_IN.get(run.explanation.status, model.ExplanationStatus.NONE)
    if status is model.ExplanationStatus.PENDING:  # nothing is in flight for an imported run
        status = model.ExplanationStatus.NONE
    return model.Explanation(status, run.explanation.summary, run.explanation.error, run.explanation.advisory_id)


def principal(value: Principal | None) -> common_pb2.Principal | None:
    return principal_to_proto(value) if value is not None else None


def advisory_to_proto(link: model.AdvisoryLink) -> runs_pb2.AdvisoryInput:
    message = runs_pb2.AdvisoryInput(
        advisory_id=link.advisory_id,
        kind=ADVISORY_KIND[link.kind],
        engine_id=link.engine_id,
        engine_version=link.engine_version,
        request_id=link.stamp.request_id,
        created_at=timestamp(link.stamp.created_at),
        created_by=principal_to_proto(link.stamp.created_by),
        review_status=REVIEW[link.review_status],
        summary=link.summary,
    )
    if link.reviewed_by is not None:
        message.reviewed_by.CopyFrom(principal_to_proto(link.reviewed_by))
    return message


def run_to_proto(record: model.RunRecord) -> runs_pb2.Run:
    content = record.content
    explanation = runs_pb2.Explanation(
        status=EXPLANATION[record.explanation.status],
        summary=record.explanation.summary,
        error=record.explanation.error,
        advisory_id=record.explanation.advisory_id,
    )
    if record.explanation.updated_at is not None:
        explanation.updated_at.CopyFrom(timestamp(record.explanation.updated_at))
    explanation.version = record.explanation.version
    review_status = record.explanation_review_status()
    if review_status is not None:
        explanation.review_status = REVIEW[review_status]
    review = record.explanation.review
    if review is not None:
        explanation.review.CopyFrom(
            runs_pb2.ExplanationReview(
                status=REVIEW[review.status],
                rationale=review.rationale,
                reviewed_by=principal_to_proto(review.reviewed_by),
                review_time=timestamp(review.reviewed_at),
                version=review.version,
                ledger=ledger_rpc.entry(review.ledger),
            )
        )
    return runs_pb2.Run(
        name=record.name,
        mode=content.mode,
        tool_id=content.tool_id,
        **_content_fields(content),
        advisory_inputs=[advisory_to_proto(a) for a in record.advisories],
        explanation=explanation,
        create_time=timestamp(record.stamp.created_at),
        created_by=principal_to_proto(record.stamp.created_by),
        request_id=record.stamp.request_id,
        trace_id=record.stamp.trace_id,
        artifact_sha256=record.artifact_sha256,
        source_run=content.source_run,
        bound_attachments=[
            runs_pb2.BoundAttachment(attachment=b.attachment, kind=b.kind, digest=digest(b.sha256, b.size_bytes))
            for b in content.bound_attachments
        ],
        engine_version=content.engine_version,
        lineage=lineage_to_proto(record.lineage) if record.lineage is not None else None,
        ledger=ledger_rpc.entry(record.ledger),
        withdrawal=withdrawal_to_proto(record.withdrawal) if record.withdrawal is not None else None,
    )


def withdrawal_to_proto(withdrawal: model.Withdrawal) -> runs_pb2.Withdrawal:
    return runs_pb2.Withdrawal(
        batch=model.run_name(withdrawal.batch_run_id),
        reason=withdrawal.reason,
        withdrawn_by=principal_to_proto(withdrawal.stamp.created_by),
        withdraw_time=timestamp(withdrawal.stamp.created_at),
        request_id=withdrawal.stamp.request_id,
        ledger=ledger_rpc.entry(withdrawal.ledger),
    )


def withdraw_result_to_proto(result: WithdrawResult) -> runs_pb2.WithdrawMigrationBatchResponse:
    return runs_pb2.WithdrawMigrationBatchResponse(withdrawal=withdrawal_to_proto(result.withdrawal), runs=result.runs)


def lineage_to_proto(message: model.OutboxMessage) -> runs_pb2.LineageRecord:
    return runs_pb2.LineageRecord(
        state=message.state.value,
        version=message.result,
        candidate=(message.payload.get("upstream") or [""])[0],
        attempts=message.attempts,
        error=message.last_error,
    )


def attachment_to_proto(record: model.AttachmentRecord) -> runs_pb2.Attachment:
    return runs_pb2.Attachment(
        name=record.name,
        kind=record.kind,
        filename=record.filename,
        content_type=record.content_type,
        digest=digest(record.sha256, record.size_bytes),
        metadata=record.metadata,
        create_time=timestamp(record.stamp.created_at),
        created_by=principal_to_proto(record.stamp.created_by),
        request_id=record.stamp.request_id,
        trace_id=record.stamp.trace_id,
        ledger=ledger_rpc.entry(record.ledger),
        signed_digest=None if record.signed is None else digest(record.signed.sha256, record.signed.size_bytes),
    )


def attachment_request(header: runs_pb2.AttachmentHeader) -> AttachmentRequest:
    return AttachmentRequest(
        header.run,
        header.kind,
        header.filename,
        header.content_type,
        header.sha256,
        dict(header.metadata),
        credentials_request(header),
    )


def new_attachment_request(run: str, item: runs_pb2.NewAttachment) -> AttachmentRequest:
    return AttachmentRequest(
        run,
        item.kind,
        item.filename,
        item.content_type,
        item.sha256,
        dict(item.metadata),
        credentials_request(item),
    )


ASSET_SOURCE_IN = {
    runs_pb2.ASSET_SOURCE_MODEL_OUTPUT: AssetSource.MODEL_OUTPUT,
    runs_pb2.ASSET_SOURCE_COMPILED_FROM_MODEL_OUTPUT: AssetSource.COMPILED_FROM_MODEL_OUTPUT,
}


def credentials_request(item: runs_pb2.AttachmentHeader | runs_pb2.NewAttachment) -> CredentialsRequest | None:
    """The item's content_credentials (None when it asks for none); an unset or unknown source maps to None, which
    validation reports with the field's path."""
    if not item.HasField("content_credentials"):
        return None
    message = item.content_credentials
    return CredentialsRequest(
        source=ASSET_SOURCE_IN.get(message.source),
        provider=message.provider,
        model=message.model,
        ai_call=message.ai_call,
        ai_request_id=message.ai_request_id,
        ai_ledger_leaf_index=message.ai_ledger_leaf_index if message.HasField("ai_ledger_leaf_index") else None,
    )


def runs_page_to_proto(page: Page[model.RunRecord]) -> runs_pb2.ListRunsResponse:
    return runs_pb2.ListRunsResponse(runs=[run_to_proto(r) for r in page.items], next_page_token=page.next_page_token)


def batch_to_proto(records: list[model.AttachmentRecord]) -> runs_pb2.BatchCreateAttachmentsResponse:
    return runs_pb2.BatchCreateAttachmentsResponse(attachments=[attachment_to_proto(r) for r in records])


def attachments_page_to_proto(page: Page[model.AttachmentRecord]) -> runs_pb2.ListAttachmentsResponse:
    return runs_pb2.ListAttachmentsResponse(
        attachments=[attachment_to_proto(a) for a in page.items], next_page_token=page.next_page_token
    )


def advisories_page_to_proto(page: Page[model.AdvisoryLink]) -> runs_pb2.ListAdvisoriesResponse:
    return runs_pb2.ListAdvisoriesResponse(
        advisories=[advisory_to_proto(a) for a in page.items], next_page_token=page.next_page_token
    )


def bind_request(request: runs_pb2.BindCandidateRequest) -> BindRequest:
    """The request as the domain takes it; `strict` defaults to true when unset."""
    return BindRequest(
        run=request.run,
        attachments=list(request.attachments),
        operator_notes=request.operator_notes,
        strict=request.strict if request.HasField("strict") else True,
        idempotency_key=request.request_id,
        lineage_candidate=request.lineage_candidate,
    )


def bind_result_to_proto(result: BindResult) -> runs_pb2.BindCandidateResponse:
    evaluation = result.evaluation.result
    return runs_pb2.BindCandidateResponse(
        run=run_to_proto(result.run),
        decision=runs_pb2.FEASIBILITY_DECISION_ALLOW if evaluation.allowed else runs_pb2.FEASIBILITY_DECISION_BLOCK,
        score=evaluation.score,
        risk_level=RISK[result.run.content.decision.risk_level],
        feasibility_sha256=result.evaluation.feasibility_sha256,
        reasons=list(evaluation.reasons),
        warnings=list(evaluation.warnings),
        engine_version=result.run.content.engine_version,
    )


def filters_from_proto(request: runs_pb2.ListRunsRequest) -> tuple[RunFilters, list[tuple[str, str]]]:
    problems = []
    for field_name, value, known in (
        ("status", request.status, RUN_STATUS_IN),
        ("risk_level", request.risk_level, RISK_IN),
        ("explanation_status", request.explanation_status, EXPLANATION_IN),
        ("explanation_review_status", request.explanation_review_status, REVIEW_IN),
    ):
        if value and value not in known:
            problems.append((field_name, "unknown value"))
    filters = RunFilters(
        status=RUN_STATUS_IN[request.status].value if request.status in RUN_STATUS_IN else "",
        risk_level=RISK_IN[request.risk_level].value if request.risk_level in RISK_IN else "",
        mode=request.mode,
        tool_id=request.tool_id,
        created_by=request.created_by,
        created_after=(
            datetime_from_proto(request.created_after, "created_after") if request.HasField("created_after") else None
        ),
        created_before=(
            datetime_from_proto(request.created_before, "created_before")
            if request.HasField("created_before")
            else None
        ),
        explanation_status=(
            EXPLANATION_IN[request.explanation_status].value if request.explanation_status in EXPLANATION_IN else ""
        ),
        explanation_review_status=(
            REVIEW_IN[request.explanation_review_status].value if request.explanation_review_status in REVIEW_IN else ""
        ),
        include_withdrawn=request.include_withdrawn,
        only_withdrawn=request.only_withdrawn,
    )
    return filters, problems


def differences_to_proto(differences: list[Difference]) -> runs_pb2.DiffRunsResponse:
    import json

    order = ["INFO", "WARNING", "CRITICAL"]
    highest = max((order.index(d.severity) for d in differences), default=-1)
    return runs_pb2.DiffRunsResponse(
        differences=[
            runs_pb2.FieldDifference(
                path=d.path,
                left=json.dumps(d.left, sort_keys=True),
                right=json.dumps(d.right, sort_keys=True),
                severity=SEVERITY[d.severity],
            )
            for d in differences
        ],
        max_severity=SEVERITY[order[highest]] if highest >= 0 else runs_pb2.SEVERITY_UNSPECIFIED,
    )


def verification_to_proto(result: Verification) -> runs_pb2.VerifyRunResponse:
    return runs_pb2.VerifyRunResponse(
        run=result.run,
        ok=result.ok,
        attachments_checked=result.attachments_checked,
        problems=[
            runs_pb2.VerificationProblem(subject=p.subject, problem=p.problem, expected=p.expected, actual=p.actual)
            for p in result.problems
        ],
    )
