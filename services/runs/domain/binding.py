"""Binding a candidate: the feasibility engine decides a run's SVG and spec and the verdict is minted as a new,
sealed run. With a lineage candidate, the verdict is minted (and recorded in lineage) only when that version's
recorded digests are the digests of the bytes decided."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from services.common.idempotency import validate_request_id
from services.common.resource_names import VERSION_NAME
from services.rosette import lineage_types
from services.runs import feasibility
from services.runs.domain import ownership, withdrawals
from services.runs.domain.advisories import MAX_NOTES
from services.runs.domain.context import Context
from services.runs.domain.idempotency import fingerprint_of
from services.runs.domain.minting import mint_verdict
from services.runs.domain.ports import CandidateRecord
from services.runs.model import (
    AttachmentKind,
    AttachmentRecord,
    BoundAttachment,
    Decision,
    Hashes,
    RiskLevel,
    RunContent,
    RunRecord,
    RunStatus,
    parse_attachment_name,
    parse_run_name,
    run_name,
)

CANDIDATE_KINDS = (AttachmentKind.GEOMETRY_SVG, AttachmentKind.GEOMETRY_SPEC_JSON, AttachmentKind.AI_PROVENANCE_JSON)


@dataclass(frozen=True)
class BindRequest:
    run: str
    # Attachment names to bind; empty binds the latest of each candidate kind.
    attachments: Sequence[str]
    operator_notes: str
    strict: bool
    idempotency_key: str
    # An svg_candidate version the verdict is about ("" for none).
    lineage_candidate: str


@dataclass(frozen=True)
class _Binding:
    """A bind request checked and its bytes read, ready to be decided."""

    request: BindRequest
    run_id: str
    chosen: tuple[AttachmentRecord, ...]
    svg: bytes | None
    spec: bytes | None
    candidate: CandidateRecord | None = None

    def digest(self, kind: AttachmentKind) -> str:
        return next((r.sha256 for r in self.chosen if r.kind == kind), "")


@dataclass(frozen=True)
class BindResult:
    run: RunRecord
    evaluation: feasibility.Evaluation


async def bind_candidate(context: Context, request: BindRequest) -> BindResult:
    """Decides a candidate and mints the verdict. With a lineage candidate, the verdict is only minted (and only
    recorded in lineage) when that version's recorded digests are the digests of the bytes being decided."""
    binding = await asyncio.to_thread(_binding, context, request)
    if request.lineage_candidate:
        if context.candidates is None:
            raise Unavailable(
                "LINEAGE_UNAVAILABLE",
                "this runs service has no lineage address, so it cannot check the lineage candidate; "
                "bind without lineage_candidate or configure CUSTODY_RUNS_LINEAGE_ADDRESS",
            )
        candidate = await context.candidates.read(request.lineage_candidate)
        _require_candidate_matches(candidate, binding)
        binding = replace(binding, candidate=candidate)
    return await asyncio.to_thread(_decide, context, binding)


def _binding(context: Context, request: BindRequest) -> _Binding:
    """The request checked, the caller's access to the run checked, the candidate's bytes read and verified."""
    run, operator_notes, lineage_candidate = request.run, request.operator_notes, request.lineage_candidate
    validate_request_id(request.idempotency_key)
    run_id = parse_run_name(run, "run")
    if len(operator_notes) > MAX_NOTES:
        raise InvalidArgument(
            "BINDING_INVALID",
            "operator_notes is limited to 4000 characters",
            violations=[FieldViolation("operator_notes", "at most 4000 characters")],
        )
    if lineage_candidate:
        match = VERSION_NAME.fullmatch(lineage_candidate)
        if not match:
            raise InvalidArgument(
                "BINDING_INVALID",
                "lineage_candidate must be a version name projects/{p}/artifacts/{type}/{entity}/versions/{n}",
                violations=[FieldViolation("lineage_candidate", "projects/{p}/artifacts/{type}/{entity}/versions/{n}")],
            )
        if match["type"] != lineage_types.SVG_CANDIDATE:
            raise InvalidArgument(
                "BINDING_INVALID",
                f"lineage_candidate must be an {lineage_types.SVG_CANDIDATE} version (got type {match['type']!r})",
                violations=[FieldViolation("lineage_candidate", f"a version of type {lineage_types.SVG_CANDIDATE}")],
            )
    ownership.require_run(context, run_id)
    withdrawals.require_not_withdrawn(context, run_id)
    chosen = _candidate_attachments(context, run_id, request.attachments)
    by_kind = {record.kind: record for record in chosen}
    svg_record = by_kind.get(AttachmentKind.GEOMETRY_SVG)
    spec_record = by_kind.get(AttachmentKind.GEOMETRY_SPEC_JSON)
    missing = [
        k.value
        for k, r in ((AttachmentKind.GEOMETRY_SVG, svg_record), (AttachmentKind.GEOMETRY_SPEC_JSON, spec_record))
        if r is None
    ]
    if missing and request.strict:
        raise FailedPrecondition(
            "CANDIDATE_INCOMPLETE",
            f"the candidate has no {' and no '.join(missing)} attachment; attach it, or bind with strict=false "
            "(`custody runs bind RUN --lenient`) to record a BLOCKED run",
            metadata={"missing": ",".join(missing)},
        )
    return _Binding(
        request=request,
        run_id=run_id,
        chosen=tuple(chosen),
        svg=context.blobs.read_all_verified(svg_record.sha256, svg_record.size_bytes) if svg_record else None,
        spec=context.blobs.read_all_verified(spec_record.sha256, spec_record.size_bytes) if spec_record else None,
    )


def _decide(context: Context, binding: _Binding) -> BindResult:
    evaluation = feasibility.evaluate(binding.svg, binding.spec, context.config.engine)
    result = evaluation.result
    run_id = binding.run_id
    bound = tuple(BoundAttachment(r.name, r.kind, r.sha256, r.size_bytes) for r in binding.chosen)
    summary: dict[str, Any] = {
        "source_run": run_name(run_id),
        "attachments": [{"kind": b.kind, "sha256": b.sha256} for b in bound],
        "strict": binding.request.strict,
    }
    if binding.candidate is not None:
        summary["candidate"] = binding.candidate.to_document()
    content = RunContent(
        mode=feasibility.ENGINE_MODE,
        tool_id=feasibility.ENGINE_ID,
        status=RunStatus.OK if result.allowed else RunStatus.BLOCKED,
        decision=Decision(
            risk_level=RiskLevel(result.risk_level),
            score=result.score,
            block_reason="; ".join(result.reasons),
            warnings=result.warnings,
        ),
        hashes=Hashes(feasibility_sha256=evaluation.feasibility_sha256),
        request_summary=summary,
        feasibility={
            "engine_version": feasibility.ENGINE_VERSION,
            "inputs": evaluation.inputs,
            "result": result.to_document(),
        },
        meta={
            "operator_notes": binding.request.operator_notes,
            "lineage_candidate": binding.request.lineage_candidate,
        },
        engine_version=feasibility.ENGINE_VERSION,
        source_run=run_name(run_id),
        bound_attachments=bound,
    )
    request_fingerprint = fingerprint_of(
        {
            "run": run_id,
            "attachments": [b.attachment for b in bound],
            "notes": binding.request.operator_notes,
            "strict": binding.request.strict,
            "lineage_candidate": binding.request.lineage_candidate,
        }
    )
    minted = mint_verdict(
        context,
        content,
        binding.request.idempotency_key,
        request_fingerprint,
        attachments=[(r, r.name) for r in binding.chosen],
        candidate=binding.candidate,
        sealing=run_id,
    )
    return BindResult(minted, evaluation)


def _candidate_attachments(context: Context, run_id: str, names: Sequence[str]) -> list[AttachmentRecord]:
    if not names:
        chosen = []
        for kind in CANDIDATE_KINDS:
            latest = context.store.list_attachments(run_id, kind.value, None, 1)
            chosen.extend(latest)
        return chosen
    chosen = []
    for index, name in enumerate(names):
        owner, attachment_id = parse_attachment_name(name, f"attachments[{index}]")
        if owner != run_id:
            raise InvalidArgument(
                "ATTACHMENT_INVALID",
                f"{name} belongs to another run than {run_name(run_id)}",
                violations=[FieldViolation(f"attachments[{index}]", "must be an attachment of the bound run")],
            )
        record = context.store.get_attachment(run_id, attachment_id)
        if record is None:
            raise NotFound("ATTACHMENT_NOT_FOUND", f"attachment {name} does not exist", metadata={"attachment": name})
        chosen.append(record)
    kinds = [r.kind for r in chosen]
    duplicated = sorted({k for k in kinds if kinds.count(k) > 1 and k in set(CANDIDATE_KINDS)})
    if duplicated:
        raise InvalidArgument(
            "ATTACHMENT_INVALID",
            f"bind one attachment per kind; several of kind {', '.join(duplicated)} were given",
            violations=[FieldViolation("attachments", "one attachment per candidate kind")],
        )
    return chosen


def _require_candidate_matches(candidate: CandidateRecord, binding: _Binding) -> None:
    """The verdict names its candidate: refused unless lineage recorded the digests of exactly these bytes."""
    problems = []
    for digest_field, kind, recorded in (
        ("svg_sha256", AttachmentKind.GEOMETRY_SVG, candidate.svg_sha256),
        ("spec_sha256", AttachmentKind.GEOMETRY_SPEC_JSON, candidate.spec_sha256),
    ):
        bound = binding.digest(kind)
        if not recorded or recorded != bound:
            problems.append(
                FieldViolation(
                    f"lineage_candidate.{digest_field}",
                    f"the candidate records {recorded or 'no digest'}; the bound {kind.value} is {bound or 'missing'}",
                )
            )
    if problems:
        raise FailedPrecondition(
            "CANDIDATE_MISMATCH",
            f"{candidate.name} is not the candidate being bound: "
            + "; ".join(p.description for p in problems)
            + ". Bind the attachments that candidate was recorded with, or name the candidate of these ones",
            violations=problems,
            metadata={"lineage_candidate": candidate.name},
        )
