"""The run artifact and its satellites, as domain values (no proto, no database).

A run's immutable record is everything in `RunRecord` except its advisories and explanation, which live in rows of
their own; `artifact_sha256` is the sha256 of the record's RFC 8785 canonical JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.identity import Principal
from services.common.ids import id_pattern
from services.common.ledger.leaves import LedgerPosition
from services.common.resource_names import RUN_ID, RUN_ID_PREFIX
from services.common.run_rules import RunFields, validate_legacy_run, validate_run

RUN_PREFIX = RUN_ID_PREFIX
ATTACHMENT_PREFIX = "att"
OUTBOX_PREFIX = "out"
ATTACHMENT_ID = id_pattern(ATTACHMENT_PREFIX)
# Loose on purpose: parse_run_name then checks the id against the shared RUN_ID, to name what is wrong.
RUN_NAME = re.compile(r"^runs/(?P<run>[^/]+)$")
ATTACHMENT_NAME = re.compile(r"^runs/(?P<run>[^/]+)/attachments/(?P<attachment>[^/]+)$")
ADVISORY_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Conservative: a filename that is safe on every filesystem and in a Content-Disposition header.
FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,199}$")


class RunStatus(StrEnum):
    OK = "OK"
    BLOCKED = "BLOCKED"
    ERROR = "ERROR"


class RiskLevel(StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"
    ERROR = "ERROR"


class ExplanationStatus(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    READY = "READY"
    ERROR = "ERROR"


class AdvisoryKind(StrEnum):
    EXPLANATION = "explanation"
    ADVISORY = "advisory"
    NOTE = "note"
    UNKNOWN = "unknown"


class ReviewStatus(StrEnum):
    AUTO_APPROVED = "AUTO_APPROVED"
    PENDING_REVIEW = "PENDING_REVIEW"
    NOT_REQUIRED = "NOT_REQUIRED"
    # A reviewer's decision on an explanation (ExplanationReview); advisories never carry these.
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


REVIEW_DECISIONS = frozenset({ReviewStatus.APPROVED, ReviewStatus.REJECTED})


class AttachmentKind(StrEnum):
    GEOMETRY_SVG = "geometry_svg"
    GEOMETRY_SPEC_JSON = "geometry_spec_json"
    AI_PROVENANCE_JSON = "ai_provenance_json"
    GCODE = "gcode"
    TOOLPATHS_JSON = "toolpaths_json"
    PREVIEW_PNG = "preview_png"
    # A model-generated reference image for a candidate (art_studio), with content credentials.
    CONCEPT_IMAGE = "concept_image"
    REPORT_JSON = "report_json"
    # The exact bytes a legacy migration read a run from (`custody runs migrate`): its core record and side files,
    # or, for a record of a JSON map file, that record's bytes of the file (the batch run keeps the whole file).
    LEGACY_SOURCE = "legacy_source"
    OTHER = "other"


GEOMETRY_KINDS = frozenset({AttachmentKind.GEOMETRY_SVG.value, AttachmentKind.GEOMETRY_SPEC_JSON.value})


@dataclass(frozen=True)
class Decision:
    risk_level: RiskLevel
    score: float
    block_reason: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hashes:
    feasibility_sha256: str
    toolpaths_sha256: str = ""
    gcode_sha256: str = ""


@dataclass(frozen=True)
class BoundAttachment:
    attachment: str
    kind: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class RunContent:
    """What defines a run, as a caller (or the binding engine) supplies it."""

    mode: str
    tool_id: str
    status: RunStatus
    decision: Decision
    hashes: Hashes
    request_summary: dict[str, Any] = field(default_factory=dict)
    feasibility: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    engine_version: str = ""
    source_run: str = ""
    bound_attachments: tuple[BoundAttachment, ...] = ()

    def to_document(self) -> dict[str, Any]:
        """JSON-compatible form, the part of the artifact that the caller controls."""
        return {
            "mode": self.mode,
            "tool_id": self.tool_id,
            "status": self.status.value,
            "decision": {
                "risk_level": self.decision.risk_level.value,
                "score": self.decision.score,
                "block_reason": self.decision.block_reason,
                "warnings": list(self.decision.warnings),
            },
            "hashes": {
                "feasibility_sha256": self.hashes.feasibility_sha256,
                "toolpaths_sha256": self.hashes.toolpaths_sha256,
                "gcode_sha256": self.hashes.gcode_sha256,
            },
            "request_summary": self.request_summary,
            "feasibility": self.feasibility,
            "outputs": dict(self.outputs),
            "meta": self.meta,
            "engine_version": self.engine_version,
            "source_run": self.source_run,
            "bound_attachments": [
                {"attachment": b.attachment, "kind": b.kind, "sha256": b.sha256, "size_bytes": b.size_bytes}
                for b in self.bound_attachments
            ],
        }

    @staticmethod
    def from_document(document: dict[str, Any]) -> RunContent:
        decision, hashes = document["decision"], document["hashes"]
        return RunContent(
            mode=document["mode"],
            tool_id=document["tool_id"],
            status=RunStatus(document["status"]),
            decision=Decision(
                RiskLevel(decision["risk_level"]),
                float(decision["score"]),
                decision.get("block_reason", ""),
                tuple(decision.get("warnings", ())),
            ),
            hashes=Hashes(
                hashes["feasibility_sha256"], hashes.get("toolpaths_sha256", ""), hashes.get("gcode_sha256", "")
            ),
            request_summary=document.get("request_summary", {}),
            feasibility=document.get("feasibility", {}),
            outputs=dict(document.get("outputs", {})),
            meta=document.get("meta", {}),
            engine_version=document.get("engine_version", ""),
            source_run=document.get("source_run", ""),
            bound_attachments=tuple(BoundAttachment(**b) for b in document.get("bound_attachments", ())),
        )


@dataclass(frozen=True)
class Stamp:
    """What the server records about who made something, when, and in which request and trace."""

    created_at: datetime
    created_by: Principal
    request_id: str
    trace_id: str


@dataclass(frozen=True)
class AdvisoryLink:
    advisory_id: str
    kind: AdvisoryKind
    engine_id: str
    engine_version: str
    summary: str
    review_status: ReviewStatus
    reviewed_by: Principal | None
    stamp: Stamp


@dataclass(frozen=True)
class ExplanationReview:
    """A human reviewer's decision on an explanation that awaited review: final once recorded."""

    status: ReviewStatus  # APPROVED or REJECTED
    rationale: str
    reviewed_by: Principal
    reviewed_at: datetime
    # The explanation version the review made, and the leaf of its history row.
    version: int
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class Explanation:
    status: ExplanationStatus
    summary: str = ""
    error: str = ""
    advisory_id: str = ""
    updated_at: datetime | None = None
    # The compare-and-set version of the explanation row (0 for one not stored yet).
    version: int = 0
    review: ExplanationReview | None = None


def explanation_name(run_id: str, version: int) -> str:
    """The ledger record name of one version of a run's explanation (a row of its history)."""
    return f"{run_name(run_id)}/explanation/versions/{version}"


class OutboxState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class OutboxMessage:
    """A write to another service that must happen because a run was minted (delivered at least once)."""

    message_id: str
    run_id: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    request_id: str
    traceparent: str
    created_at: datetime
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    last_error: str = ""
    # What the receiver answered (e.g. the lineage version name), once delivered.
    result: str = ""


class SealScope(StrEnum):
    # A run the engine minted: its record is the decision, so it takes no attachments at all.
    ALL = "all"
    # A run that has been bound from: the decision names its geometry, which must stay the latest.
    GEOMETRY = "geometry"


@dataclass(frozen=True)
class Seal:
    run_id: str
    sealed_by: str
    scope: SealScope

    def forbids(self, kind: str) -> bool:
        return self.scope is SealScope.ALL or kind in GEOMETRY_KINDS


@dataclass(frozen=True)
class Withdrawal:
    """A run taken back with the legacy migration batch that created it (append-only; the run stays readable)."""

    run_id: str
    batch_run_id: str
    reason: str
    stamp: Stamp
    ledger: LedgerPosition | None = None

    def refusal(self) -> FailedPrecondition:
        """RUN_WITHDRAWN: what binding the run answers (the domain's check, or the database's trigger in a race)."""
        return FailedPrecondition(
            "RUN_WITHDRAWN",
            f"{run_name(self.run_id)} was withdrawn with the migration {run_name(self.batch_run_id)} "
            f"({self.reason[:200]}); a withdrawn run is never bound: bind its re-migrated replacement instead",
            metadata={"run": run_name(self.run_id), "batch": run_name(self.batch_run_id)},
        )


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    content: RunContent
    stamp: Stamp
    artifact_sha256: str
    advisories: tuple[AdvisoryLink, ...] = ()
    explanation: Explanation = Explanation(ExplanationStatus.NONE)
    # The lineage record of this run, when minting it had to record one (see the outbox).
    lineage: OutboxMessage | None = None
    # Where the run's leaf sits in the runs ledger (None only when the ledger is off, for benchmarks).
    ledger: LedgerPosition | None = None
    # Set once the run is withdrawn (not part of the immutable record).
    withdrawal: Withdrawal | None = None

    @property
    def name(self) -> str:
        return run_name(self.run_id)

    def explanation_review_status(self) -> ReviewStatus | None:
        """Where the explanation stands in review: the reviewer's decision once there is one, else what its advisory
        says (AUTO_APPROVED for GREEN, PENDING_REVIEW for YELLOW/RED, NOT_REQUIRED imported); None unless READY."""
        explanation = self.explanation
        if explanation.status is not ExplanationStatus.READY:
            return None
        if explanation.review is not None:
            return explanation.review.status
        link = next((a for a in self.advisories if a.advisory_id == explanation.advisory_id), None)
        return link.review_status if link is not None else ReviewStatus.NOT_REQUIRED


@dataclass(frozen=True)
class AttachmentRecord:
    attachment_id: str
    run_id: str
    kind: str
    filename: str
    content_type: str
    sha256: str
    size_bytes: int
    metadata: dict[str, str]
    stamp: Stamp
    ledger: LedgerPosition | None = None
    # The credentialed asset (the bytes above with the C2PA manifest runs signed), when one was asked for.
    signed: BlobDigest | None = None

    @property
    def name(self) -> str:
        return attachment_name(self.run_id, self.attachment_id)

    def blobs(self) -> list[BlobDigest]:
        """The blobs the attachment names: its bytes, and the credentialed asset when it has one."""
        return [BlobDigest(self.sha256, self.size_bytes), *([self.signed] if self.signed else [])]


@dataclass(frozen=True)
class BlobDigest:
    sha256: str
    size_bytes: int


def run_name(run_id: str) -> str:
    return f"runs/{run_id}"


def withdrawal_name(run_id: str) -> str:
    """The ledger record name of a run's withdrawal."""
    return f"{run_name(run_id)}/withdrawal"


def attachment_name(run_id: str, attachment_id: str) -> str:
    return f"runs/{run_id}/attachments/{attachment_id}"


def parse_run_name(name: str, field_name: str = "name") -> str:
    """runs/{run} -> run id; anything else (runs/../x included) is INVALID_ARGUMENT, never a path."""
    match = RUN_NAME.fullmatch(name)
    if not match or not RUN_ID.fullmatch(match["run"]):
        raise InvalidArgument(
            "NAME_INVALID",
            f"{field_name} must be runs/{{run}} with a run id like run_<32 hex> (got {name[:100]!r})",
            violations=[FieldViolation(field_name, "must be runs/run_<32 lower-case hex>")],
        )
    return match["run"]


def parse_attachment_name(name: str, field_name: str = "name") -> tuple[str, str]:
    match = ATTACHMENT_NAME.fullmatch(name)
    if not match or not RUN_ID.fullmatch(match["run"]) or not ATTACHMENT_ID.fullmatch(match["attachment"]):
        raise InvalidArgument(
            "NAME_INVALID",
            f"{field_name} must be runs/{{run}}/attachments/{{attachment}} (got {name[:100]!r})",
            violations=[FieldViolation(field_name, "must be runs/run_<32 hex>/attachments/att_<32 hex>")],
        )
    return match["run"], match["attachment"]


def run_fields(content: RunContent) -> RunFields:
    return RunFields(
        mode=content.mode,
        tool_id=content.tool_id,
        status=content.status.value,
        risk_level=content.decision.risk_level.value,
        score=content.decision.score,
        block_reason=content.decision.block_reason,
        feasibility_sha256=content.hashes.feasibility_sha256,
        toolpaths_sha256=content.hashes.toolpaths_sha256,
        gcode_sha256=content.hashes.gcode_sha256,
        engine_version=content.engine_version,
        output_names=tuple(content.outputs),
    )


def validate_content(content: RunContent, prefix: str = "run") -> None:
    """Every problem with a caller-supplied run, as one INVALID_ARGUMENT with a violation per field (the rules are
    in services.common.run_rules, which `custody runs migrate` applies too)."""
    validate_run(run_fields(content), prefix)


def validate_legacy_content(content: RunContent, prefix: str = "run") -> tuple[str, ...]:
    """The legacy-migration path: see services.common.run_rules.validate_legacy_run."""
    return validate_legacy_run(run_fields(content), prefix)
