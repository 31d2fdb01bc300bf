"""The lineage domain's values: versions, their metadata, status and health records, type definitions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import rfc8785

from services.common.clock import rfc3339
from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import canonical_json, is_sha256_hex, sha256_canonical
from services.common.identity import Principal
from services.common.ledger.leaves import LedgerPosition
from services.lineage.domain.names import VersionName

# JSON numbers must round-trip exactly through RFC 8785 (IEEE doubles): integers beyond 2**53 cannot.
MAX_SAFE_INTEGER = 2**53 - 1


class Status(StrEnum):
    DRAFT = "DRAFT"
    APPROVED = "APPROVED"
    FLAGGED_FOR_REVIEW = "FLAGGED_FOR_REVIEW"
    REJECTED = "REJECTED"


class Health(StrEnum):
    VALID = "valid"
    STALE = "stale"
    NEEDS_REVISION = "needs_revision"
    CONFIRMED_VALID = "confirmed_valid"


class Source(StrEnum):
    AI = "ai"
    HUMAN = "human"
    HYBRID = "hybrid"


# Health values a new upstream revision overrides with `stale`; needs_revision is a stronger verdict and stays.
STALEABLE = (Health.VALID, Health.CONFIRMED_VALID)


@dataclass(frozen=True)
class Metadata:
    """Audit metadata of a version, immutable with it."""

    intent: str
    rationale: str
    confidence: float
    source: Source
    alternatives_considered: tuple[str, ...] = ()
    producing_module: str = ""
    producing_role: str = ""
    # A custody.common.v1.CostRecord as JSON (proto field names), or None when no AI call was involved.
    cost: Mapping[str, Any] | None = None
    schema_version: str = ""
    parameters_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "rationale": self.rationale,
            "confidence": self.confidence,
            "source": self.source.value,
            "alternatives_considered": list(self.alternatives_considered),
            "producing_module": self.producing_module,
            "producing_role": self.producing_role,
            "cost": dict(self.cost) if self.cost is not None else None,
            "schema_version": self.schema_version,
            "parameters_sha256": self.parameters_sha256,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Metadata:
        return cls(
            intent=document["intent"],
            rationale=document["rationale"],
            confidence=float(document["confidence"]),
            source=Source(document["source"]),
            alternatives_considered=tuple(document.get("alternatives_considered", ())),
            producing_module=document.get("producing_module", ""),
            producing_role=document.get("producing_role", ""),
            cost=document.get("cost"),
            schema_version=document.get("schema_version", ""),
            parameters_sha256=document.get("parameters_sha256", ""),
        )

    def validate(self) -> None:
        """Required audit fields: intent, rationale, source, confidence in 0..1."""
        problems = []
        if not self.intent.strip():
            problems.append(FieldViolation("metadata.intent", "required"))
        if not self.rationale.strip():
            problems.append(FieldViolation("metadata.rationale", "required"))
        if math.isnan(self.confidence) or not 0.0 <= self.confidence <= 1.0:
            problems.append(FieldViolation("metadata.confidence", "required, between 0 and 1"))
        if self.parameters_sha256 and not is_sha256_hex(self.parameters_sha256):
            problems.append(FieldViolation("metadata.parameters_sha256", "64 lower-case hex characters, or empty"))
        if problems:
            raise InvalidArgument("METADATA_INVALID", "version metadata is incomplete or invalid", violations=problems)


@dataclass(frozen=True)
class StatusRecord:
    status: Status
    revision: int
    at: datetime
    actor: Principal
    rationale: str = ""
    request_id: str = ""
    # The ledger leaf recording this change (None without a ledger).
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class HealthRecord:
    health: Health
    revision: int
    at: datetime
    actor: Principal
    rationale: str = ""
    cause: str = ""
    request_id: str = ""
    # The ledger leaf recording this change: its own, or the one of the whole staleness propagation that made it.
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class Version:
    """One immutable snapshot plus its current (mutable, separately stored) status and health."""

    name: VersionName
    data: Mapping[str, Any]
    metadata: Metadata
    upstream: tuple[VersionName, ...]
    data_sha256: str
    snapshot_sha256: str
    created_at: datetime
    created_by: Principal
    request_id: str
    status: StatusRecord
    health: HealthRecord
    latest: bool
    status_history: tuple[StatusRecord, ...] = ()
    health_history: tuple[HealthRecord, ...] = ()
    # The ledger leaf recording the snapshot and its upstream edges (None without a ledger).
    ledger: LedgerPosition | None = None
    # On whose request a service recorded it (runs: the caller of BindCandidate); None when recorded without one.
    requested_by: Principal | None = None


def snapshot_document(
    name: VersionName,
    data_sha256: str,
    metadata: Metadata,
    upstream: tuple[VersionName, ...],
    created_at: datetime,
    created_by: Principal,
    request_id: str,
    requested_by: Principal | None = None,
) -> dict[str, Any]:
    """Everything immutable about a version; its digest is the snapshot_sha256 a verifier recomputes. A requester
    is part of it when there is one (versions recorded without one keep the digest they were created with)."""
    document: dict[str, Any] = {
        "name": str(name),
        "data_sha256": data_sha256,
        "metadata": metadata.to_json(),
        "upstream": [str(u) for u in upstream],
        "create_time": rfc3339(created_at),
        "created_by": {"id": created_by.id, "kind": created_by.kind.value},
        "request_id": request_id,
    }
    if requested_by is not None:
        document["requested_by"] = {"id": requested_by.id, "kind": requested_by.kind.value}
    return document


def snapshot_sha256(*args: Any) -> str:
    return sha256_canonical(snapshot_document(*args))


@dataclass(frozen=True)
class Conditional:
    """Upstream types required only when the selected job types include any of `when_any_selected`."""

    requires: tuple[str, ...]
    when_any_selected: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"requires": list(self.requires), "when_any_selected": list(self.when_any_selected)}


@dataclass(frozen=True)
class TypeDefinition:
    """A registered artifact type: JSON Schema of its data and required-lineage rules, under a schema version."""

    name: str
    policy: str
    schema_version: str
    schema: Mapping[str, Any]
    requires: tuple[str, ...] = ()
    conditional: tuple[Conditional, ...] = ()
    selection_field: str = ""
    # Who may create versions (see domain/creators.py); empty admits people only.
    creators: tuple[str, ...] = ()
    # Four eyes (domain/four_eyes.py): a version's creator and requester may not approve it. Only a policy file
    # can turn it off.
    four_eyes: bool = True
    source: str = "runtime"
    registered_at: datetime | None = None
    registered_by: Principal | None = None
    # The ledger leaf recording the registration (None without a ledger, or for a definition not registered yet).
    ledger: LedgerPosition | None = None

    def definition(self) -> dict[str, Any]:
        """What makes two registrations the same definition (not who or when). Creator rules and a four-eyes
        waiver are part of it; a definition without them keeps the digest it was registered with before they
        existed (four eyes required is the default, so it is not spelled out)."""
        definition: dict[str, Any] = {
            "name": self.name,
            "policy": self.policy,
            "schema_version": self.schema_version,
            "schema": self.schema,
            "requires": list(self.requires),
            "conditional": [c.to_json() for c in self.conditional],
            "selection_field": self.selection_field,
        }
        if self.creators:
            definition["creators"] = list(self.creators)
        if not self.four_eyes:
            definition["four_eyes"] = False
        return definition

    @property
    def definition_sha256(self) -> str:
        return sha256_canonical(self.definition())


@dataclass(frozen=True)
class ProjectSummary:
    """A project as ListProjects reports it: it exists from its first version on."""

    project: str
    version_count: int
    latest_created_at: datetime


@dataclass(frozen=True)
class UpstreamState:
    """What Approve needs to know about one referenced upstream version, read in the approving transaction."""

    name: VersionName
    status: Status
    health: Health
    health_cause: str
    latest_number: int

    @property
    def latest(self) -> bool:
        return self.name.number == self.latest_number


@dataclass(frozen=True)
class LineageNodeInfo:
    """One node of a closure page. Names stay strings: they come from the store, validated when created."""

    name: str
    depth: int
    status: Status
    health: Health
    upstream: tuple[str, ...]
    latest: bool
    created_by: Principal


@dataclass(frozen=True)
class ClosurePage:
    root: VersionName
    nodes: tuple[LineageNodeInfo, ...]
    truncated: bool
    next_cursor: tuple[int, int] | None
    total_size: int


@dataclass
class Idempotency:
    """A mutating call's idempotency key (scoped to the caller) and the fingerprint of its request."""

    principal_id: str
    request_id: str
    method: str
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_json(value: Any, path: str = "data") -> Any:
    """Protobuf Struct carries every number as a double: integral values become ints again, and values JSON (RFC
    8785) cannot represent exactly are refused rather than silently changed."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise InvalidArgument(
                "DATA_INVALID", f"{path} is not a JSON number", violations=[FieldViolation(path, "NaN or infinity")]
            )
        if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
            return int(value)
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidArgument(
                "DATA_INVALID",
                f"{path} is an integer beyond 2**53, which JSON cannot carry exactly",
                violations=[FieldViolation(path, "integer beyond 2**53")],
            )
        return value
    if isinstance(value, Mapping):
        return {str(k): normalize_json(v, f"{path}/{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_json(v, f"{path}/{i}") for i, v in enumerate(value)]
    raise InvalidArgument("DATA_INVALID", f"{path} is not JSON", violations=[FieldViolation(path, "not JSON")])


def canonical_text(value: Any) -> str:
    """RFC 8785 text of a JSON value (how data and metadata are stored and hashed)."""
    try:
        return canonical_json(value).decode("utf-8")
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise InvalidArgument("DATA_INVALID", f"value is not canonical JSON: {exc}") from None
