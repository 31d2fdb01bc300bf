"""`custody runs migrate` checks each legacy record before sending it, so that its dry run and report lines say
what the server will say. These tests hold the reader's verdict on a record to the verdict runs reaches on the
RunInput the reader built: both apply services.common.run_rules, each through its own view of a run."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli import legacy
from services.common.errors import InvalidArgument
from services.runs import convert
from services.runs.model import validate_legacy_content
from tests.support.legacy import legacy_artifact

RECORDS: dict[str, dict[str, Any]] = {
    "clean": {},
    "a clean blocked run": {"status": "BLOCKED", "decision": {"risk_level": "RED", "score": 0.2, "block_reason": "x"}},
    "a clean error run": {"status": "ERROR", "decision": {"risk_level": "ERROR", "score": 0.0}},
    "blocked without a reason": {"status": "BLOCKED", "decision": {"risk_level": "RED", "score": 0.2}},
    "ok with a block reason": {"decision": {"risk_level": "GREEN", "score": 0.9, "block_reason": "x"}},
    "error with a green risk": {"status": "ERROR", "decision": {"risk_level": "GREEN", "score": 0.0}},
    "score above one": {"decision": {"risk_level": "GREEN", "score": 1.5}},
    "every later rule": {"status": "ERROR", "decision": {"risk_level": "RED", "score": 7, "block_reason": "x"}},
    "no feasibility hash": {"hashes": {"feasibility_sha256": ""}},
    "a bad gcode hash": {"hashes": {"feasibility_sha256": "a" * 64, "gcode_sha256": "ABC"}},
    "a bad mode and output name": {"mode": "c n c", "outputs": {"bad name": "x"}},
    "a bad hash and a later rule": {"hashes": {"feasibility_sha256": "x"}, "status": "BLOCKED"},
}


def verdict(check: Any, run: Any) -> tuple[str, ...] | list[tuple[str, str, str]]:
    """The warnings, or the refusal as (reason, field, description) per violation."""
    try:
        return tuple(check(run))
    except InvalidArgument as exc:
        return [(exc.reason, v.field, v.description) for v in exc.violations]


def server_check(run: Any) -> tuple[str, ...]:
    return validate_legacy_content(convert.content_from_proto(run))


@pytest.mark.parametrize("overrides", RECORDS.values(), ids=RECORDS.keys())
def test_the_reader_and_the_server_reach_the_same_verdict_on_a_record(overrides: dict[str, Any]) -> None:
    run = legacy.read_record("run_rules000001", legacy_artifact("run_rules000001", **overrides))
    assert verdict(legacy.migration_warnings, run) == verdict(server_check, run)


def test_the_records_compared_include_refused_warned_and_clean_ones() -> None:
    verdicts = [
        verdict(legacy.migration_warnings, legacy.read_record("run_x", legacy_artifact("run_x", **overrides)))
        for overrides in RECORDS.values()
    ]
    assert any(isinstance(v, list) for v in verdicts)
    assert any(isinstance(v, tuple) and v for v in verdicts)
    assert () in verdicts
