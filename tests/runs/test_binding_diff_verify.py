"""BindCandidate mints a decided run from attached SVG + spec; DiffRuns grades differences; VerifyRun re-hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.db import create_engine
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG, HOSTILE_SVGS, compiled, spec
from tests.runs.conftest import RunsClient, error_of, run_input


@pytest.fixture
def session(runs: RunsClient) -> runs_pb2.Run:
    """The run art_studio attaches candidates to."""
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))


def attach_candidate(
    runs: RunsClient, run: runs_pb2.Run, svg: bytes = CLEAN_SVG, spec_bytes: bytes = CLEAN_SPEC
) -> list[str]:
    items = [runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", content_type="image/svg+xml", data=svg)]
    if spec_bytes:
        items.append(runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=spec_bytes))
    items.append(
        runs_pb2.NewAttachment(kind="ai_provenance_json", filename="envelope.json", data=b'{"provider":"local"}')
    )
    created = runs.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items))
    return [a.name for a in created.attachments]


def bind(runs: RunsClient, run: runs_pb2.Run, **fields: object) -> runs_pb2.BindCandidateResponse:
    return runs.BindCandidate(runs_pb2.BindCandidateRequest(run=run.name, **fields))  # type: ignore[arg-type]


def test_clean_candidate_mints_an_allowed_green_run(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session)
    bound = bind(runs, session, attachments=names[:2], operator_notes="first try")
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_ALLOW
    assert bound.run.status == runs_pb2.RUN_STATUS_OK
    assert bound.risk_level == runs_pb2.RISK_LEVEL_GREEN
    assert bound.run.hashes.feasibility_sha256 == bound.feasibility_sha256
    assert bound.run.source_run == session.name
    assert [(b.kind, b.digest.sha256) for b in bound.run.bound_attachments] == [
        ("geometry_svg", hashlib.sha256(CLEAN_SVG).hexdigest()),
        ("geometry_spec_json", hashlib.sha256(CLEAN_SPEC).hexdigest()),
    ]


def test_the_minted_run_holds_its_own_records_of_the_bound_blobs(runs: RunsClient, session: runs_pb2.Run) -> None:
    bound = bind(runs, session, attachments=attach_candidate(runs, session)[:2])
    held = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=bound.run.name)).attachments
    assert {(a.kind, a.digest.sha256) for a in held} == {(b.kind, b.digest.sha256) for b in bound.run.bound_attachments}


def test_binding_the_same_inputs_twice_gives_the_same_feasibility_hash(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session)[:2]
    first, second = bind(runs, session, attachments=names), bind(runs, session, attachments=names)
    assert first.run.name != second.run.name
    assert first.feasibility_sha256 == second.feasibility_sha256


def test_without_names_the_latest_attachment_of_each_kind_is_bound(runs: RunsClient, session: runs_pb2.Run) -> None:
    attach_candidate(runs, session, svg=HOSTILE_SVGS["active_content"][0])
    attach_candidate(runs, session)
    bound = bind(runs, session)
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_ALLOW
    assert sorted(b.kind for b in bound.run.bound_attachments) == [
        "ai_provenance_json",
        "geometry_spec_json",
        "geometry_svg",
    ]


def test_hostile_svg_mints_a_blocked_run_with_reasons(runs: RunsClient, session: runs_pb2.Run) -> None:
    hostile = HOSTILE_SVGS["active_content"][0]
    bound = bind(runs, session, attachments=attach_candidate(runs, session, svg=hostile)[:2])
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_BLOCK
    assert bound.run.status == runs_pb2.RUN_STATUS_BLOCKED
    assert bound.risk_level == runs_pb2.RISK_LEVEL_RED
    assert bound.run.decision.block_reason.startswith("SVG_ELEMENT_NOT_ALLOWED at svg/g[1]/script[1]")
    assert "SVG_NOT_FROM_SPEC" in bound.run.decision.block_reason


def test_infeasible_geometry_mints_a_blocked_run(runs: RunsClient, session: runs_pb2.Run) -> None:
    thin = spec({"kind": "ring", "inner_r": 40, "outer_r": 40.2})
    bound = bind(runs, session, attachments=attach_candidate(runs, session, svg=compiled(thin), spec_bytes=thin)[:2])
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_BLOCK
    assert [r.split(":")[0] for r in bound.reasons] == ["FEATURE_BELOW_TOOL_DIAMETER"]


def test_strict_binding_without_a_spec_is_failed_precondition(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session, spec_bytes=b"")
    error = status.decode(error_of(lambda: bind(runs, session, attachments=names[:1])))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CANDIDATE_INCOMPLETE")
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1  # only the session: nothing minted


def test_lenient_binding_without_a_spec_mints_a_blocked_run(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session, spec_bytes=b"")
    bound = bind(runs, session, attachments=names[:1], strict=False)
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_BLOCK
    assert [r.split(":")[0] for r in bound.reasons] == ["MISSING_SPEC"]


def test_attachment_of_another_run_is_refused(runs: RunsClient, session: runs_pb2.Run) -> None:
    other = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    foreign = attach_candidate(runs, other)
    error = status.decode(error_of(lambda: bind(runs, session, attachments=foreign[:2])))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ATTACHMENT_INVALID")


def test_corrupted_input_is_data_loss_and_mints_nothing(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session)
    blob = Path(runs.harness.settings.resolved_blob_dir) / "sha256"  # type: ignore[attr-defined]
    digest = hashlib.sha256(CLEAN_SVG).hexdigest()
    (blob / digest[:2] / digest[2:4] / digest).write_bytes(CLEAN_SVG.replace(b"48", b"49"))
    error = status.decode(error_of(lambda: bind(runs, session, attachments=names[:2])))
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "BLOB_CORRUPTED")
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1


def test_repeated_binding_with_the_same_key_returns_the_same_run(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session)[:2]
    first = bind(runs, session, attachments=names, request_id="bind-1")
    again = bind(runs, session, attachments=names, request_id="bind-1")
    assert again.run == first.run
    error = status.decode(
        error_of(lambda: bind(runs, session, attachments=names, request_id="bind-1", operator_notes="x"))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def _severities(diff: runs_pb2.DiffRunsResponse) -> dict[str, int]:
    return {d.path: d.severity for d in diff.differences}


def test_diff_of_a_run_with_itself_is_empty(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    diff = runs.DiffRuns(runs_pb2.DiffRunsRequest(left=run.name, right=run.name))
    assert (list(diff.differences), diff.max_severity) == ([], runs_pb2.SEVERITY_UNSPECIFIED)


def test_diff_grades_hash_risk_score_and_metadata_changes(runs: RunsClient) -> None:
    left = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    right = runs.CreateRun(
        runs_pb2.CreateRunRequest(
            run=run_input(
                decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_YELLOW, score=0.6, warnings=["tight radius"]),
                hashes=runs_pb2.Hashes(feasibility_sha256="b" * 64),
                engine_version="cam-engine/2.2",
            )
        )
    )
    diff = runs.DiffRuns(runs_pb2.DiffRunsRequest(left=left.name, right=right.name))
    graded = _severities(diff)
    assert graded["hashes.feasibility_sha256"] == runs_pb2.SEVERITY_CRITICAL
    assert graded["decision.risk_level"] == runs_pb2.SEVERITY_WARNING
    assert graded["decision.score"] == runs_pb2.SEVERITY_WARNING
    assert graded["engine_version"] == runs_pb2.SEVERITY_INFO
    assert diff.max_severity == runs_pb2.SEVERITY_CRITICAL


def test_small_score_drift_is_info_and_status_to_error_is_critical(runs: RunsClient) -> None:
    left = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    drift = runs.CreateRun(
        runs_pb2.CreateRunRequest(
            run=run_input(
                decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.9, warnings=["tight radius"])
            )
        )
    )
    errored = runs.CreateRun(
        runs_pb2.CreateRunRequest(
            run=run_input(
                status=runs_pb2.RUN_STATUS_ERROR, decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_ERROR)
            )
        )
    )
    assert _severities(runs.DiffRuns(runs_pb2.DiffRunsRequest(left=left.name, right=drift.name)))["decision.score"] == (
        runs_pb2.SEVERITY_INFO
    )
    assert _severities(runs.DiffRuns(runs_pb2.DiffRunsRequest(left=left.name, right=errored.name)))["status"] == (
        runs_pb2.SEVERITY_CRITICAL
    )


def test_verify_passes_for_an_untouched_run(runs: RunsClient, session: runs_pb2.Run) -> None:
    bound = bind(runs, session, attachments=attach_candidate(runs, session)[:2])
    report = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=bound.run.name))
    assert (report.ok, report.attachments_checked, list(report.problems)) == (True, 2, [])


def test_verify_reports_every_corrupted_attachment(runs: RunsClient, session: runs_pb2.Run) -> None:
    names = attach_candidate(runs, session)
    root = Path(runs.harness.settings.resolved_blob_dir) / "sha256"  # type: ignore[attr-defined]
    for path in list(root.rglob("*"))[:]:
        if path.is_file() and path.read_bytes() in (CLEAN_SVG, CLEAN_SPEC):
            path.write_bytes(b"tampered")
    report = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=session.name))
    assert not report.ok
    assert sorted(p.subject for p in report.problems) == sorted(names[:2])
    assert {p.problem for p in report.problems} == {"SIZE_MISMATCH"}


def test_verify_reports_a_tampered_record(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with engine.begin() as connection:  # an attacker with database access drops the guard first
            if connection.dialect.name == "sqlite":
                connection.execute(sa.text("DROP TRIGGER runs_no_update"))
            else:
                connection.execute(sa.text("DROP TRIGGER runs_immutable ON runs"))
            connection.execute(
                sa.text("UPDATE runs SET artifact_json = replace(artifact_json, 'cnc_rosette', 'cnc_other')")
            )
    finally:
        engine.dispose()
    report = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert {p.problem for p in report.problems} == {"ARTIFACT_HASH_MISMATCH", "INDEX_MISMATCH"}


@pytest.mark.parametrize(
    ("family", "index"), [(family, i) for family, payloads in HOSTILE_SVGS.items() for i in range(len(payloads))]
)
def test_every_bypass_family_is_blocked_through_bind_candidate(
    runs: RunsClient, session: runs_pb2.Run, family: str, index: int
) -> None:
    """The hostile SVG is attached as a caller would attach it; the minted verdict must be BLOCK, naming why."""
    names = attach_candidate(runs, session, svg=HOSTILE_SVGS[family][index])
    bound = bind(runs, session, attachments=names[:2])
    assert bound.decision == runs_pb2.FEASIBILITY_DECISION_BLOCK
    assert bound.run.status == runs_pb2.RUN_STATUS_BLOCKED and bound.score <= 0.25
    assert any(r.startswith("SVG_NOT_FROM_SPEC") for r in bound.reasons), bound.reasons
