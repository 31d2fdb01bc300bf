"""Four eyes (separation of duties): who made a version, or asked for it, does not also decide that it is good.

A version records its creator and, when a service recorded it on someone's behalf, its requester (runs: the caller
of BindCandidate; art_studio: the caller of GenerateCandidates). With four eyes, which every type has unless its
policy file waives it, neither of them may approve the version or confirm its health: another reviewer must.

Principal ids are compared as a person would read them, not byte for byte: NFKC-normalised and case-folded
(services.common.identity.same_principal, which runs' explanation reviews use too), so `human:Alice`, `HUMAN:alice`
and `human:alice` in full-width letters are one person here even if a credentials file ever held them apart. Only
services that act on behalf of their caller may name a requester; what they name is the caller their own access
control authenticated, so nobody else can attribute a request to someone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from services.common.identity import Principal, PrincipalKind, same_principal
from services.lineage.domain.model import TypeDefinition, Version

SELF_APPROVAL = "SELF_APPROVAL"

# Services that record versions on behalf of the principal that called them, and say who that was.
REQUEST_ATTESTERS = frozenset({"service:runs", "service:art_studio"})

# "<kind>:<name>" for the kinds that can ask for work (a system principal never requests a version).
REQUESTER_ID = re.compile(r"(human|service):[A-Za-z0-9._@-]{1,128}")


@dataclass(frozen=True)
class Conflict:
    """One reason the principal may not judge the version: the field naming them, and why."""

    field: str
    message: str


def conflicts(version: Version, definition: TypeDefinition, judge: Principal, action: str) -> list[Conflict]:
    """Why `judge` may not `action` (approve, confirm) `version` under its type's rule; empty when they may."""
    if not definition.four_eyes:
        return []
    found: list[Conflict] = []
    if same_principal(judge, version.created_by):
        found.append(
            Conflict(
                "created_by",
                f"{judge.id} created {version.name} and cannot {action} it (four eyes): another reviewer must",
            )
        )
    if version.requested_by is not None and same_principal(judge, version.requested_by):
        found.append(
            Conflict(
                "requested_by",
                f"{judge.id} requested {version.name} (recorded by {version.created_by.id}) and cannot {action} it "
                "(four eyes): another reviewer must",
            )
        )
    return found


def ensure_not_own(version: Version, definition: TypeDefinition, judge: Principal, action: str) -> None:
    """Refuses with SELF_APPROVAL (one entry per conflict) when `judge` made or requested the version."""
    found = conflicts(version, definition, judge, action)
    if found:
        raise FailedPrecondition(
            "SELF_APPROVAL",
            "; ".join(c.message for c in found),
            violations=[FieldViolation(c.field, f"{SELF_APPROVAL}: {c.message}") for c in found],
            metadata={"version": str(version.name), "principal": judge.id},
        )


def validate_requester(requested_by: Principal | None, caller: Principal) -> None:
    """CreateVersion's requested_by: only an attesting service may name one, and only a well-formed principal."""
    if requested_by is None:
        return
    if caller.kind is not PrincipalKind.SERVICE or caller.id not in REQUEST_ATTESTERS:
        raise PermissionDenied(
            "REQUESTED_BY_NOT_ALLOWED",
            f"{caller.id} may not name who requested a version; only {', '.join(sorted(REQUEST_ATTESTERS))} record "
            "versions on behalf of their caller (a person's versions are their own: leave requested_by unset)",
            metadata={"principal": caller.id},
        )
    kind = requested_by.kind.value
    if requested_by.kind not in (PrincipalKind.HUMAN, PrincipalKind.SERVICE) or not (
        REQUESTER_ID.fullmatch(requested_by.id) and requested_by.id.startswith(f"{kind}:")
    ):
        raise InvalidArgument(
            "REQUESTED_BY_INVALID",
            f"requested_by must be a human or service principal named '<kind>:<name>' (got {requested_by.id[:100]!r}"
            f" of kind {kind})",
            violations=[FieldViolation("requested_by", "a human or service principal id '<kind>:<name>'")],
        )
