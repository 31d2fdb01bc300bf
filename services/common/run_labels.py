"""How a run's explanation reads in listings, the same in the CLI and the review console: a READY explanation that a
reviewer still has to decide is PENDING_REVIEW, never READY."""

from __future__ import annotations

from custody.runs.v1 import runs_pb2

# What a READY explanation's review status makes of it: READY only when nobody has to review it.
REVIEWED = {
    runs_pb2.REVIEW_STATUS_PENDING_REVIEW: "PENDING_REVIEW",
    runs_pb2.REVIEW_STATUS_APPROVED: "APPROVED",
    runs_pb2.REVIEW_STATUS_REJECTED: "REJECTED",
}


def explanation_state(explanation: runs_pb2.Explanation) -> str:
    """NONE, PENDING, ERROR, or for a READY explanation: PENDING_REVIEW (a YELLOW or RED run's, awaiting a reviewer),
    APPROVED or REJECTED (a reviewer decided), READY (auto-approved or imported: no review applies)."""
    if explanation.status == runs_pb2.EXPLANATION_STATUS_READY and explanation.review_status in REVIEWED:
        return REVIEWED[explanation.review_status]
    return runs_pb2.ExplanationStatus.Name(explanation.status).removeprefix("EXPLANATION_STATUS_")
