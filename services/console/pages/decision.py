"""The decision on a version: what the approval gate says before the reviewer decides (a dry run of Approve,
which writes nothing), and the decision itself, made by lineage as the signed-in person.

Every refusal is kept whole: the reason and each violation the gate reported, as lineage worded them. The
request id of a decision comes from the form, so a form submitted twice (a double click, a resent POST) is one
decision: lineage replays the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from custody.lineage.v1 import lineage_pb2
from services.common.status import DecodedError
from services.console.upstream import PersonCalls, Refused

DECISIONS = ("approve", "reject", "flag")
_METHODS = {"approve": "Approve", "reject": "Reject", "flag": "Flag"}
_REQUESTS = {
    "approve": lineage_pb2.ApproveRequest,
    "reject": lineage_pb2.RejectRequest,
    "flag": lineage_pb2.FlagRequest,
}
DECIDABLE = (lineage_pb2.STATUS_DRAFT, lineage_pb2.STATUS_FLAGGED_FOR_REVIEW)


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


@dataclass(frozen=True)
class RefusalView:
    code: str
    reason: str
    message: str
    violations: list[Violation] = field(default_factory=list)


@dataclass(frozen=True)
class GateView:
    """The approval gate's answer now: passes, or the refusal a real Approve would get."""

    checked: bool
    passes: bool
    refusal: RefusalView | None = None


def refusal_view(error: DecodedError) -> RefusalView:
    return RefusalView(
        code=error.code.name,
        reason=error.reason,
        message=error.message,
        violations=[Violation(v.field, v.description) for v in error.violations],
    )


async def approval_gate(calls: PersonCalls, version: lineage_pb2.Version) -> GateView:
    if version.status.status not in DECIDABLE:
        return GateView(checked=False, passes=False)
    try:
        await calls.call(
            "lineage", "Approve", lineage_pb2.ApproveRequest(name=version.name, rationale="dry run", validate_only=True)
        )
    except Refused as refused:
        return GateView(checked=True, passes=False, refusal=refusal_view(refused.error))
    return GateView(checked=True, passes=True)


async def decide(calls: PersonCalls, name: str, decision: str, rationale: str, request_id: str) -> lineage_pb2.Version:
    """Approve, reject or flag as the signed-in person; raises Refused with lineage's answer."""
    request = _REQUESTS[decision](name=name, rationale=rationale, request_id=request_id)
    result: lineage_pb2.Version = await calls.call("lineage", _METHODS[decision], request)
    return result
