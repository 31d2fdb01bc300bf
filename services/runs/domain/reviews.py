"""Reviewing explanations: a person with the reviewer role approves or rejects an explanation that awaits review
(READY, PENDING_REVIEW: a YELLOW or RED run's), with a rationale, by compare-and-set on the version they read.

The decision is final and recorded once: the store changes the explanation row and appends its history row with
that row's ledger leaf in one transaction. Four eyes as in lineage: who asked for the explanation (the caller of
SuggestExplanation, who made its READY version) and who created the run may reject it but not approve it; another
reviewer must. A retry of the recorded review (same reviewer, decision, rationale, expected version) is answered
with the run as it is."""

from __future__ import annotations

import logging

from services.common import call_context
from services.common.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument
from services.common.identity import Principal, same_principal
from services.runs import authority
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.model import (
    REVIEW_DECISIONS,
    ExplanationReview,
    ReviewStatus,
    RunRecord,
    parse_run_name,
)

log = logging.getLogger("custody.runs")

MAX_RATIONALE = 4000
SELF_APPROVAL = "SELF_APPROVAL"


def review_explanation(
    context: Context, name: str, decision: ReviewStatus, rationale: str, expected_version: int
) -> RunRecord:
    run_id = parse_run_name(name, "run")
    reason = _rationale(rationale)
    if expected_version < 1:
        raise InvalidArgument(
            "EXPECTED_VERSION_INVALID",
            "expected_version is required: the explanation.version of the run as you read it (1 or more)",
            violations=[FieldViolation("expected_version", "the Explanation.version you reviewed, 1 or more")],
        )
    assert decision in REVIEW_DECISIONS, decision
    caller = call_context.require_principal()
    authority.require_human_reviewer(caller, "reviewing an explanation")
    record = ownership.stored(context, run_id).record
    explanation = record.explanation
    recorded = explanation.review
    if recorded is not None and _same_review(recorded, decision, reason, caller, expected_version):
        return record  # a retry of the review that was recorded
    status = record.explanation_review_status()
    if status is not ReviewStatus.PENDING_REVIEW:
        raise _not_pending(record, status)
    if explanation.version != expected_version:
        raise _changed(record, expected_version)
    if decision is ReviewStatus.APPROVED:
        _ensure_not_own(context, record, caller)
    stamp = context.stamp()
    review = ExplanationReview(decision, reason, stamp.created_by, stamp.created_at, expected_version + 1)
    stored = context.store.review_explanation(run_id, review, stamp.request_id)
    if stored is None:  # another change won the compare-and-set between the read and the write
        raise _changed(ownership.stored(context, run_id).record, expected_version)
    log.info(
        "explanation of %s %s by %s",
        record.name,
        decision.value,
        caller.id,
        extra={"run": record.name, "review_status": decision.value, "actor": caller.id},
    )
    return ownership.stored(context, run_id).record


def _rationale(rationale: str) -> str:
    reason = rationale.strip()
    if not reason:
        raise InvalidArgument(
            "RATIONALE_REQUIRED",
            "a review needs a rationale: say why you approve or reject the explanation",
            violations=[FieldViolation("rationale", "required")],
        )
    if len(reason) > MAX_RATIONALE:
        raise InvalidArgument(
            "RATIONALE_TOO_LONG",
            f"the rationale is {len(reason)} characters; at most {MAX_RATIONALE}",
            violations=[FieldViolation("rationale", f"at most {MAX_RATIONALE} characters")],
        )
    return reason


def _same_review(
    recorded: ExplanationReview, decision: ReviewStatus, rationale: str, caller: Principal, expected_version: int
) -> bool:
    return (
        recorded.status is decision
        and recorded.rationale == rationale
        and recorded.reviewed_by.id == caller.id
        and recorded.version == expected_version + 1
    )


def _not_pending(record: RunRecord, status: ReviewStatus | None) -> FailedPrecondition:
    explanation = record.explanation
    review = explanation.review
    metadata = {
        "run": record.name,
        "explanation_status": explanation.status.value,
        "review_status": status.value if status is not None else "",
    }
    if review is not None:
        metadata["reviewed_by"] = review.reviewed_by.id
        why = (
            f"it was {review.status.value} by {review.reviewed_by.id} at {review.reviewed_at.isoformat()} "
            "(a review is final)"
        )
    elif status is None:
        why = f"it is {explanation.status.value}: only a READY explanation is reviewed"
    elif status is ReviewStatus.AUTO_APPROVED:
        why = "it is AUTO_APPROVED: the explanation of a GREEN run is informational and needs no reviewer"
    else:
        why = f"it is {status.value}: no review applies to it"
    return FailedPrecondition(
        "EXPLANATION_NOT_PENDING", f"the explanation of {record.name} does not await review: {why}", metadata=metadata
    )


def _changed(record: RunRecord, expected_version: int) -> Aborted:
    current = record.explanation.version
    return Aborted(
        "EXPLANATION_CHANGED",
        f"the explanation of {record.name} is at version {current}, not {expected_version}: re-read the run "
        f"(`custody runs show {record.name}`) and decide on what it says now",
        metadata={"run": record.name, "current_version": str(current), "expected_version": str(expected_version)},
    )


def _ensure_not_own(context: Context, record: RunRecord, caller: Principal) -> None:
    """SELF_APPROVAL (one entry per role) when the caller asked for the explanation or created the run."""
    found: list[FieldViolation] = []
    requester = context.store.explanation_changed_by(record.run_id, record.explanation.version)
    if requester is not None and same_principal(caller, requester):
        found.append(
            FieldViolation(
                "requested_by",
                f"{SELF_APPROVAL}: {caller.id} asked for the explanation of {record.name} and cannot approve it "
                "(four eyes): another reviewer must",
            )
        )
    if same_principal(caller, record.stamp.created_by):
        found.append(
            FieldViolation(
                "created_by",
                f"{SELF_APPROVAL}: {caller.id} created {record.name} and cannot approve the explanation of its "
                "decision (four eyes): another reviewer must",
            )
        )
    if found:
        raise FailedPrecondition(
            SELF_APPROVAL,
            "; ".join(v.description.removeprefix(f"{SELF_APPROVAL}: ") for v in found),
            violations=found,
            metadata={"run": record.name, "principal": caller.id},
        )
