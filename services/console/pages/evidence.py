"""The evidence behind an SVG candidate: its SVG and spec as attached to its run (each checked against the digest
lineage recorded), the AI call that produced the spec, the feasibility verdicts on it, and every run's
verification recomputed now.

A page never trusts one service's word for another's: the SVG shown is the bytes whose sha256 equals the
candidate's recorded svg_sha256 (otherwise nothing is shown and the mismatch is), and the verification is a fresh
VerifyRun, not a stored flag.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from custody.ai_gateway.v1 import gateway_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2
from services.common.protomap import struct_to_dict
from services.console.pages.calls import CallSummary, call_summary
from services.console.pages.formatting import enum_label, pretty_json
from services.console.upstream import PersonCalls, Refused
from services.rosette.lineage_types import FEASIBILITY_RUN, SVG_CANDIDATE

SVG_KIND = "geometry_svg"
SPEC_KIND = "geometry_spec_json"
# At most this many feasibility verdicts on one candidate are shown (their lineage graph shows all).
MAX_VERDICTS = 10


@dataclass(frozen=True)
class Verification:
    run: str
    ok: bool
    attachments_checked: int
    problems: list[str]
    error: str = ""


@dataclass(frozen=True)
class Verdict:
    version: str
    verdict: str
    reasons: list[str]
    run: str
    run_status: str
    engine_version: str
    block_reason: str
    warnings: list[str]
    status: str
    verification: Verification | None


@dataclass
class CandidateEvidence:
    candidate: str
    run: str
    svg_sha256: str
    spec_sha256: str
    # The spec as attached, shown only when its bytes match spec_sha256.
    spec_json: str = ""
    spec_problem: str = ""
    svg_attachment: str = ""
    svg_problem: str = ""
    call: CallSummary | None = None
    call_problem: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    verification: Verification | None = None


def data_of(version: lineage_pb2.Version) -> dict[str, Any]:
    return struct_to_dict(version.data, "data")


async def candidate_for(calls: PersonCalls, version: lineage_pb2.Version) -> lineage_pb2.Version | None:
    """The svg_candidate a version is about: itself, or the candidate a feasibility_run decided."""
    if version.artifact_type == SVG_CANDIDATE:
        return version
    if version.artifact_type == FEASIBILITY_RUN:
        name = str(data_of(version).get("candidate", ""))
        if name:
            result: lineage_pb2.Version = await calls.call(
                "lineage", "GetVersion", lineage_pb2.GetVersionRequest(name=name)
            )
            return result
    return None


async def candidate_evidence(calls: PersonCalls, candidate: lineage_pb2.Version) -> CandidateEvidence:
    data = data_of(candidate)
    evidence = CandidateEvidence(
        candidate=candidate.name,
        run=str(data.get("run", "")),
        svg_sha256=str(data.get("svg_sha256", "")),
        spec_sha256=str(data.get("spec_sha256", "")),
    )
    attachment_names = {str(a) for a in data.get("attachments", []) if isinstance(a, str)}
    svg, spec = await _attachments(calls, evidence.run, attachment_names)
    if svg is None:
        evidence.svg_problem = "the candidate's run holds no SVG attachment named by the candidate"
    else:
        evidence.svg_attachment = svg.name
        if svg.digest.sha256 != evidence.svg_sha256:
            evidence.svg_problem = (
                f"the attached SVG's digest {svg.digest.sha256} is not the candidate's recorded {evidence.svg_sha256}"
            )
    if spec is None:
        evidence.spec_problem = "the candidate's run holds no spec attachment named by the candidate"
    else:
        content = await read_attachment(calls, spec.name)
        actual = hashlib.sha256(content).hexdigest()
        if actual != evidence.spec_sha256:
            evidence.spec_problem = f"the attached spec's sha256 {actual} is not the recorded {evidence.spec_sha256}"
        else:
            evidence.spec_json = _pretty_spec(content)
    gateway_call = str(data.get("gateway_call", ""))
    if gateway_call:
        try:
            call = await calls.call("ai_gateway", "GetCall", gateway_pb2.GetCallRequest(name=gateway_call))
            evidence.call = call_summary(call)
        except Refused as refused:
            evidence.call_problem = f"{refused.error.code.name} {refused.error.reason}: {refused.error.message}"
    else:
        evidence.call_problem = "the candidate names no AI call"
    if evidence.run:
        evidence.verification = await verify(calls, evidence.run)
    return evidence


async def verdicts_on(calls: PersonCalls, candidate: str, feasibility_versions: list[str]) -> list[Verdict]:
    """The feasibility verdicts recorded on a candidate, each with its engine run verified afresh."""
    verdicts = []
    for name in feasibility_versions[:MAX_VERDICTS]:
        version = await calls.call("lineage", "GetVersion", lineage_pb2.GetVersionRequest(name=name))
        data = data_of(version)
        if data.get("candidate") != candidate:
            continue
        run_name = str(data.get("run", ""))
        run_status, engine, block_reason, warnings = "", "", "", []
        verification = None
        if run_name:
            run = await calls.call("runs", "GetRun", runs_pb2.GetRunRequest(name=run_name))
            run_status = enum_label(runs_pb2.RunStatus.Name(run.status), "RUN_STATUS_")
            engine, block_reason, warnings = run.engine_version, run.decision.block_reason, list(run.decision.warnings)
            verification = await verify(calls, run_name)
        verdicts.append(
            Verdict(
                version=name,
                verdict=str(data.get("verdict", "")),
                reasons=[str(r) for r in data.get("reasons", [])],
                run=run_name,
                run_status=run_status,
                engine_version=engine,
                block_reason=block_reason,
                warnings=warnings,
                status=enum_label(lineage_pb2.Status.Name(version.status.status), "STATUS_"),
                verification=verification,
            )
        )
    return verdicts


async def verify(calls: PersonCalls, run: str) -> Verification:
    try:
        result = await calls.call("runs", "VerifyRun", runs_pb2.VerifyRunRequest(name=run))
    except Refused as refused:
        return Verification(run, False, 0, [], f"{refused.error.code.name} {refused.error.reason}")
    problems = [f"{p.subject}: {p.problem} (expected {p.expected}, found {p.actual})" for p in result.problems]
    return Verification(run, result.ok, result.attachments_checked, problems)


async def read_attachment(calls: PersonCalls, name: str) -> bytes:
    messages = await calls.stream("runs", "ReadAttachment", runs_pb2.ReadAttachmentRequest(name=name))
    return b"".join(m.chunk for m in messages)


async def candidate_svg(calls: PersonCalls, candidate: lineage_pb2.Version) -> bytes | None:
    """The candidate's SVG bytes, only if their sha256 is the one lineage recorded for it."""
    data = data_of(candidate)
    names = {str(a) for a in data.get("attachments", []) if isinstance(a, str)}
    svg, _ = await _attachments(calls, str(data.get("run", "")), names)
    if svg is None:
        return None
    content = await read_attachment(calls, svg.name)
    return content if hashlib.sha256(content).hexdigest() == data.get("svg_sha256") else None


async def _attachments(
    calls: PersonCalls, run: str, names: set[str]
) -> tuple[runs_pb2.Attachment | None, runs_pb2.Attachment | None]:
    if not run or not names:
        return None, None
    found: dict[str, runs_pb2.Attachment] = {}
    token = ""
    while True:
        response = await calls.call(
            "runs", "ListAttachments", runs_pb2.ListAttachmentsRequest(run=run, page_size=100, page_token=token)
        )
        for attachment in response.attachments:
            if attachment.name in names and attachment.kind in (SVG_KIND, SPEC_KIND):
                found.setdefault(attachment.kind, attachment)
        token = response.next_page_token
        if not token or len(found) == 2:
            return found.get(SVG_KIND), found.get(SPEC_KIND)


def _pretty_spec(content: bytes) -> str:
    try:
        return pretty_json(json.loads(content))
    except ValueError:
        return content.decode("utf-8", "replace")
