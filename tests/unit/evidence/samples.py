"""Statement inputs for the evidence tests: one run with two attachments, one upstream version and one AI call,
and one approval of a version with one upstream."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from services.common.evidence.statement import AiCallInput, ApprovalInput, AttachmentInput, Digested, RunInput

ARTIFACT = b'{"run":"runs/r1"}'
SVG = b"<svg/>"
GCODE = b"G0 X0 Y0\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


UPSTREAM = Digested("projects/p/artifacts/spec/rosette/versions/3", sha(b"spec v3"))
CALL = AiCallInput("calls/c1", sha(b"call record"), model="local-echo", provider="local", request_id="req-ai-1")
RUN = RunInput(
    name="runs/r1",
    artifact_sha256=sha(ARTIFACT),
    mode="feasibility",
    tool_id="cnc-router",
    request_id="req-1",
    created_at=datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
    engine_id="feasibility",
    engine_version="2.1.0",
    attachments=(
        AttachmentInput("runs/r1/attachments/a1", "rosette.svg", sha(SVG)),
        AttachmentInput("runs/r1/attachments/a2", "job.gcode", sha(GCODE)),
    ),
    lineage=(UPSTREAM,),
    ai_calls=(CALL,),
    custody_version="1.2.3",
)
APPROVED = Digested("projects/p/artifacts/feasibility_run/r1/versions/1", sha(b"run version 1"))
APPROVAL = ApprovalInput(
    record_name="projects/p/artifacts/feasibility_run/r1/versions/1/status/2",
    reviewer="human:alice",
    decided_at=datetime(2025, 3, 5, 9, 0, 0, 1, tzinfo=UTC),
    policy_name="types/feasibility_run@2",
    policy_sha256=sha(b"policy"),
    approved=(APPROVED,),
    request_id="req-approve-1",
    upstream=(UPSTREAM,),
    rationale="checked the toolpaths",
)
