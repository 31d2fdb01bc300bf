"""Status decisions: the transition table, who may decide, and the approval gate.

The gate reports every violation, not the first: a reviewer fixes all of them in one pass. It is pure; the store
runs it inside the transaction that would record the decision, so nothing can change between check and write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from services.common.identity import REVIEWER_ROLE, Principal, PrincipalKind
from services.lineage.domain import four_eyes
from services.lineage.domain.model import Health, Status, TypeDefinition, UpstreamState, Version
from services.lineage.domain.names import VersionName
from services.lineage.domain.policy import required_types, selection_in

# Violation codes, in the order of the checks (who approves, then what).
SELF_APPROVAL = four_eyes.SELF_APPROVAL
LINEAGE_INCOMPLETE = "LINEAGE_INCOMPLETE"
UPSTREAM_NOT_LATEST = "UPSTREAM_NOT_LATEST"
UPSTREAM_NOT_APPROVED = "UPSTREAM_NOT_APPROVED"
LINEAGE_STALE = "LINEAGE_STALE"

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.APPROVED, Status.FLAGGED_FOR_REVIEW, Status.REJECTED}),
    Status.FLAGGED_FOR_REVIEW: frozenset({Status.APPROVED, Status.REJECTED}),
    Status.APPROVED: frozenset(),
    Status.REJECTED: frozenset(),
}

UNHEALTHY = (Health.STALE, Health.NEEDS_REVISION)


@dataclass(frozen=True)
class Violation:
    code: str
    field: str
    message: str


def require_rationale(rationale: str) -> str:
    if not rationale.strip():
        raise InvalidArgument(
            "RATIONALE_REQUIRED",
            "a decision needs a rationale: say why",
            violations=[FieldViolation("rationale", "required")],
        )
    return rationale.strip()


def ensure_transition(name: VersionName, current: Status, target: Status) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final)"
        raise FailedPrecondition(
            "STATUS_TRANSITION_INVALID",
            f"{name} is {current}; it cannot become {target} (allowed from {current}: {allowed})",
            metadata={"current_status": current.value, "requested_status": target.value},
        )


def is_human_reviewer(principal: Principal) -> bool:
    return principal.kind is PrincipalKind.HUMAN and REVIEWER_ROLE in principal.roles


def ensure_human_reviewer(principal: Principal, reason: str, action: str) -> None:
    """Defence in depth behind the access table: service and system principals never decide for a person."""
    if not is_human_reviewer(principal):
        raise PermissionDenied(
            reason,
            f"{action} needs a human with the {REVIEWER_ROLE!r} role; {principal.id} is a {principal.kind.value} "
            f"principal with roles {sorted(principal.roles)}",
            metadata={"principal": principal.id, "kind": principal.kind.value},
        )


def approval_violations(
    version: Version, definition: TypeDefinition, upstream: Mapping[VersionName, UpstreamState]
) -> list[Violation]:
    """Checks (1) required lineage and (2) freshness of every upstream and of the version itself."""
    found: list[Violation] = []
    required = required_types(definition, selection_in(definition, version.data))
    present = {ref.artifact_type for ref in version.upstream}
    for needed in required:
        if needed not in present:
            found.append(
                Violation(
                    LINEAGE_INCOMPLETE,
                    "upstream",
                    f"{definition.name} requires an upstream {needed} version (required: "
                    f"{', '.join(required)}); none is referenced",
                )
            )
    for index, ref in enumerate(version.upstream):
        state = upstream[ref]
        field = f"upstream[{index}]"
        if not state.latest:
            found.append(Violation(UPSTREAM_NOT_LATEST, field, f"{ref} is superseded by version {state.latest_number}"))
        if state.status is not Status.APPROVED:
            found.append(Violation(UPSTREAM_NOT_APPROVED, field, f"{ref} is {state.status}, not APPROVED"))
        if state.health in UNHEALTHY:
            cause = f" (caused by {state.health_cause})" if state.health_cause else ""
            found.append(Violation(LINEAGE_STALE, field, f"{ref} is {state.health}{cause}"))
    if version.health.health in UNHEALTHY:
        cause = f" (caused by {version.health.cause})" if version.health.cause else ""
        found.append(
            Violation(
                LINEAGE_STALE, "name", f"{version.name} itself is {version.health.health}{cause}; assess it first"
            )
        )
    return found


def approval_error(name: VersionName, violations: Sequence[Violation]) -> FailedPrecondition:
    """FAILED_PRECONDITION naming every violation: reason = the first check that failed, one entry each."""
    codes = [v.code for v in violations]
    return FailedPrecondition(
        codes[0],
        f"{name} cannot be approved: {len(violations)} violation(s): " + "; ".join(v.message for v in violations),
        violations=[FieldViolation(v.field, f"{v.code}: {v.message}") for v in violations],
        metadata={"violations": ",".join(codes), "violation_count": str(len(codes)), "version": str(name)},
    )


def check_approval(
    version: Version, definition: TypeDefinition, upstream: Mapping[VersionName, UpstreamState], approver: Principal
) -> None:
    """The whole gate, as Approve runs it; raises to refuse, returns to allow. Four eyes is one of the violations
    (first, so it is the reason), reported with the others: the next reviewer sees everything left to fix."""
    ensure_human_reviewer(approver, "APPROVER_NOT_HUMAN_REVIEWER", "approval")
    ensure_transition(version.name, version.status.status, Status.APPROVED)
    violations = [
        Violation(SELF_APPROVAL, c.field, c.message)
        for c in four_eyes.conflicts(version, definition, approver, "approve")
    ]
    violations += approval_violations(version, definition, upstream)
    if violations:
        raise approval_error(version.name, violations)
