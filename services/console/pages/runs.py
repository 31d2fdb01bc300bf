"""Runs as the runs service holds them: the list, newest first and filtered as ListRuns allows, and one run with
its attachments, advisories, explanation, lineage record and a verification recomputed on every view.

Nothing here is trusted from an earlier view: the verification is a fresh VerifyRun, and the attachments and
advisories are listed again each time (their contents are never fetched: only their records are shown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from custody.runs.v1 import runs_pb2
from services.common.protomap import struct_to_dict
from services.common.resource_names import RUN_NAME
from services.common.run_labels import explanation_state
from services.console.pages.evidence import Verification, verify
from services.console.pages.filters import FilterForm
from services.console.pages.formatting import age, enum_label, pretty_json, timestamp
from services.console.upstream import PersonCalls

PAGE_SIZE = 50
# At most this many attachments and advisories are listed on a run's page; the page says when there are more.
MAX_LISTED = 200
_LIST_PAGE = 100


@dataclass(frozen=True)
class DecisionView:
    risk_level: str
    score: float
    block_reason: str
    warnings: list[str]


@dataclass(frozen=True)
class RunRow:
    name: str
    run_id: str
    mode: str
    tool_id: str
    status: str
    decision: DecisionView
    created_by: str
    create_time: str
    age: str
    explanation: str


@dataclass(frozen=True)
class RunsPage:
    form: FilterForm
    rows: list[RunRow]
    next_page: str


@dataclass(frozen=True)
class AttachmentView:
    name: str
    attachment_id: str
    kind: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    created_by: str
    create_time: str
    age: str
    ledger_index: int | None


@dataclass(frozen=True)
class BoundView:
    attachment: str
    # Where the console shows it: the page of the run that holds it, at its row.
    link: str
    kind: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class AdvisoryView:
    advisory_id: str
    kind: str
    engine: str
    summary: str
    review_status: str
    reviewed_by: str
    created_by: str
    created_at: str
    request_id: str


@dataclass(frozen=True)
class ExplanationView:
    status: str
    summary: str
    error: str
    updated_at: str
    advisory_id: str


@dataclass(frozen=True)
class LineageView:
    state: str
    version: str
    candidate: str
    attempts: int
    error: str


@dataclass(frozen=True)
class OutputView:
    key: str
    value: str
    # The run page to follow when the value names an attachment; empty otherwise.
    link: str


@dataclass(frozen=True)
class RunView:
    name: str
    run_id: str
    mode: str
    tool_id: str
    engine_version: str
    status: str
    decision: DecisionView
    created_by: str
    create_time: str
    age: str
    request_id: str
    trace_id: str
    artifact_sha256: str
    hashes: list[tuple[str, str]]
    ledger_index: int | None
    ledger_origin: str
    source_run: str
    source_run_id: str
    bound: list[BoundView]
    outputs: list[OutputView]
    explanation: ExplanationView
    lineage: LineageView | None
    request_summary_json: str
    feasibility_json: str
    meta_json: str


@dataclass(frozen=True)
class RunPage:
    run: RunView
    attachments: list[AttachmentView]
    attachments_truncated: bool
    advisories: list[AdvisoryView]
    advisories_truncated: bool
    verification: Verification


def run_name(run_id: str) -> str | None:
    """runs/{run_id} when the id is one the runs service could have minted; None otherwise (nothing to call)."""
    name = f"runs/{run_id}"
    return name if RUN_NAME.fullmatch(name) else None


def run_id_of(name: str) -> str:
    return name.removeprefix("runs/").split("/", 1)[0]


def decision_view(decision: runs_pb2.Decision) -> DecisionView:
    return DecisionView(
        risk_level=enum_label(runs_pb2.RiskLevel.Name(decision.risk_level), "RISK_LEVEL_"),
        score=decision.score,
        block_reason=decision.block_reason,
        warnings=list(decision.warnings),
    )


def run_row(run: runs_pb2.Run) -> RunRow:
    created = timestamp(run, "create_time")
    return RunRow(
        name=run.name,
        run_id=run_id_of(run.name),
        mode=run.mode,
        tool_id=run.tool_id,
        status=_status(run.status),
        decision=decision_view(run.decision),
        created_by=run.created_by.id,
        create_time=created,
        age=age(created),
        explanation=_explanation_status(run.explanation),
    )


def runs_form(params: Mapping[str, str]) -> tuple[FilterForm, runs_pb2.ListRunsRequest]:
    """The filter form as submitted (its fields in the order the page shows them), and the ListRuns request it
    asks for: call it only when the form has no problems."""
    form = FilterForm(params)
    request = runs_pb2.ListRunsRequest(page_size=PAGE_SIZE)
    request.mode = form.text("mode", "Mode", "candidate_binding")
    request.tool_id = form.text("tool_id", "Tool", "custody-feasibility")
    request.status = form.choice("status", "Status", runs_pb2.RunStatus, "RUN_STATUS_")  # type: ignore[assignment]
    request.risk_level = form.choice("risk_level", "Risk level", runs_pb2.RiskLevel, "RISK_LEVEL_")  # type: ignore[assignment]
    request.explanation_status = form.choice(  # type: ignore[assignment]
        "explanation", "Explanation", runs_pb2.ExplanationStatus, "EXPLANATION_STATUS_"
    )
    request.created_by = form.text("created_by", "Created by", "human:operator")
    after = form.time("created_after", "Created from (UTC)")
    before = form.time("created_before", "Created before (UTC)")
    form.require_order(after, before, "created_before")
    if after is not None:
        request.created_after.CopyFrom(after)
    if before is not None:
        request.created_before.CopyFrom(before)
    request.page_token = form.page_token()
    return form, request


async def runs_list(calls: PersonCalls, params: Mapping[str, str]) -> RunsPage:
    form, request = runs_form(params)
    if form.problems:
        return RunsPage(form, [], "")
    response = await calls.call("runs", "ListRuns", request)
    return RunsPage(form, [run_row(r) for r in response.runs], form.next_page("/runs", response.next_page_token))


async def run_page(calls: PersonCalls, name: str) -> RunPage:
    run = await calls.call("runs", "GetRun", runs_pb2.GetRunRequest(name=name))
    attachments, attachments_truncated = await _attachments(calls, name)
    advisories, advisories_truncated = await _advisories(calls, name)
    return RunPage(
        run=run_view(run),
        attachments=attachments,
        attachments_truncated=attachments_truncated,
        advisories=advisories,
        advisories_truncated=advisories_truncated,
        verification=await verify(calls, name),
    )


def run_view(run: runs_pb2.Run) -> RunView:
    created = timestamp(run, "create_time")
    hashes = run.hashes
    return RunView(
        name=run.name,
        run_id=run_id_of(run.name),
        mode=run.mode,
        tool_id=run.tool_id,
        engine_version=run.engine_version,
        status=_status(run.status),
        decision=decision_view(run.decision),
        created_by=run.created_by.id,
        create_time=created,
        age=age(created),
        request_id=run.request_id,
        trace_id=run.trace_id,
        artifact_sha256=run.artifact_sha256,
        hashes=[
            ("feasibility_sha256", hashes.feasibility_sha256),
            ("toolpaths_sha256", hashes.toolpaths_sha256),
            ("gcode_sha256", hashes.gcode_sha256),
        ],
        ledger_index=run.ledger.leaf_index if run.HasField("ledger") else None,
        ledger_origin=run.ledger.origin,
        source_run=run.source_run,
        source_run_id=run_id_of(run.source_run) if run.source_run else "",
        bound=[
            BoundView(
                attachment=b.attachment,
                link=_attachment_link(b.attachment),
                kind=b.kind,
                sha256=b.digest.sha256,
                size_bytes=b.digest.size_bytes,
            )
            for b in run.bound_attachments
        ],
        outputs=[OutputView(k, v, _attachment_link(v)) for k, v in sorted(run.outputs.items())],
        explanation=ExplanationView(
            status=_explanation_status(run.explanation),
            summary=run.explanation.summary,
            error=run.explanation.error,
            updated_at=timestamp(run.explanation, "updated_at"),
            advisory_id=run.explanation.advisory_id,
        ),
        lineage=(
            LineageView(
                state=run.lineage.state,
                version=run.lineage.version,
                candidate=run.lineage.candidate,
                attempts=run.lineage.attempts,
                error=run.lineage.error,
            )
            if run.HasField("lineage")
            else None
        ),
        request_summary_json=pretty_json(struct_to_dict(run.request_summary, "request_summary")),
        feasibility_json=pretty_json(struct_to_dict(run.feasibility, "feasibility")),
        meta_json=pretty_json(struct_to_dict(run.meta, "meta")),
    )


def attachment_view(attachment: runs_pb2.Attachment) -> AttachmentView:
    created = timestamp(attachment, "create_time")
    return AttachmentView(
        name=attachment.name,
        attachment_id=attachment.name.rsplit("/", 1)[-1],
        kind=attachment.kind,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size_bytes=attachment.digest.size_bytes,
        sha256=attachment.digest.sha256,
        created_by=attachment.created_by.id,
        create_time=created,
        age=age(created),
        ledger_index=attachment.ledger.leaf_index if attachment.HasField("ledger") else None,
    )


def advisory_view(advisory: runs_pb2.AdvisoryInput) -> AdvisoryView:
    engine = " ".join(part for part in (advisory.engine_id, advisory.engine_version) if part)
    return AdvisoryView(
        advisory_id=advisory.advisory_id,
        kind=enum_label(runs_pb2.AdvisoryKind.Name(advisory.kind), "ADVISORY_KIND_"),
        engine=engine,
        summary=advisory.summary,
        review_status=enum_label(runs_pb2.ReviewStatus.Name(advisory.review_status), "REVIEW_STATUS_"),
        reviewed_by=advisory.reviewed_by.id,
        created_by=advisory.created_by.id,
        created_at=timestamp(advisory, "created_at"),
        request_id=advisory.request_id,
    )


async def _attachments(calls: PersonCalls, run: str) -> tuple[list[AttachmentView], bool]:
    found: list[AttachmentView] = []
    token = ""
    while True:
        response = await calls.call(
            "runs", "ListAttachments", runs_pb2.ListAttachmentsRequest(run=run, page_size=_LIST_PAGE, page_token=token)
        )
        found.extend(attachment_view(a) for a in response.attachments)
        token = response.next_page_token
        if not token or len(found) >= MAX_LISTED:
            return found[:MAX_LISTED], bool(token) or len(found) > MAX_LISTED


async def _advisories(calls: PersonCalls, run: str) -> tuple[list[AdvisoryView], bool]:
    found: list[AdvisoryView] = []
    token = ""
    while True:
        response = await calls.call(
            "runs", "ListAdvisories", runs_pb2.ListAdvisoriesRequest(run=run, page_size=_LIST_PAGE, page_token=token)
        )
        found.extend(advisory_view(a) for a in response.advisories)
        token = response.next_page_token
        if not token or len(found) >= MAX_LISTED:
            return found[:MAX_LISTED], bool(token) or len(found) > MAX_LISTED


def _attachment_link(name: str) -> str:
    """/runs/{run}#{attachment} for an attachment name; empty for anything else (e.g. an output still pending)."""
    run, _, attachment = name.partition("/attachments/")
    if not attachment or "/" in attachment or run_name(run_id_of(run)) != run:
        return ""
    return f"/runs/{run_id_of(run)}#{attachment}"


def _status(value: runs_pb2.RunStatus.ValueType) -> str:
    return enum_label(runs_pb2.RunStatus.Name(value), "RUN_STATUS_")


def _explanation_status(explanation: runs_pb2.Explanation) -> str:
    """ "pending review" for a READY explanation a reviewer still has to decide (services/common/run_labels.py)."""
    return explanation_state(explanation).replace("_", " ").lower()
