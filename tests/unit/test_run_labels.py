"""An explanation a reviewer still has to decide never reads READY, in the CLI or in the review console."""

from __future__ import annotations

from custody.runs.v1 import runs_pb2
from services.common.run_labels import explanation_state
from services.console.pages.runs import _explanation_status

READY = runs_pb2.EXPLANATION_STATUS_READY


def test_a_ready_explanation_awaiting_review_is_pending_review() -> None:
    pending = runs_pb2.Explanation(status=READY, review_status=runs_pb2.REVIEW_STATUS_PENDING_REVIEW)
    assert explanation_state(pending) == "PENDING_REVIEW"
    assert _explanation_status(pending) == "pending review"


def test_a_decided_explanation_says_the_decision() -> None:
    rejected = runs_pb2.Explanation(status=READY, review_status=runs_pb2.REVIEW_STATUS_REJECTED)
    assert explanation_state(rejected) == "REJECTED"


def test_a_ready_explanation_no_review_applies_to_is_ready() -> None:
    assert explanation_state(runs_pb2.Explanation(status=READY)) == "READY"
    assert explanation_state(runs_pb2.Explanation(status=runs_pb2.EXPLANATION_STATUS_PENDING)) == "PENDING"
