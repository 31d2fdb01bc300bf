"""Diffing two runs: every differing path of their hashed documents (identity fields aside), each with a
severity, so a reviewer sees first what changes a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument
from services.common.run_diff import flatten, severity
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.domain.minting import artifact_document
from services.runs.model import RunRecord, parse_run_name


@dataclass(frozen=True)
class Difference:
    path: str
    left: Any
    right: Any
    severity: str  # INFO | WARNING | CRITICAL


def diff_runs(context: Context, left: str, right: str, score_threshold: float) -> list[Difference]:
    threshold = score_threshold or 0.1
    if not 0 < threshold <= 1:
        raise InvalidArgument(
            "DIFF_INVALID",
            "score_drift_threshold must be in (0, 1]",
            violations=[FieldViolation("score_drift_threshold", "in (0, 1]")],
        )
    a = ownership.owned_stored(context, parse_run_name(left, "left")).record
    b = ownership.owned_stored(context, parse_run_name(right, "right")).record
    return diff_records(a, b, threshold)


IDENTITY_PATHS = frozenset({"name", "create_time", "request_id", "trace_id"})


def diff_records(a: RunRecord, b: RunRecord, score_threshold: float) -> list[Difference]:
    left = flatten(artifact_document(a.run_id, a.content, a.stamp))
    right = flatten(artifact_document(b.run_id, b.content, b.stamp))
    left["explanation.status"], right["explanation.status"] = a.explanation.status.value, b.explanation.status.value
    differences = []
    for path in sorted(left.keys() | right.keys()):
        if path in IDENTITY_PATHS:
            continue
        lv, rv = left.get(path), right.get(path)
        if lv != rv:
            differences.append(Difference(path, lv, rv, severity(path, lv, rv, score_threshold)))
    return differences
