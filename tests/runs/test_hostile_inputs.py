"""Hostile but well-formed runs requests the generative test found reaching INTERNAL: each now has its reason."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.json_limits import MAX_JSON_DEPTH
from tests.runs.candidates import CLEAN_SVG
from tests.runs.conftest import RunsClient, error_of, run_input, struct


def test_a_non_finite_number_in_run_meta_is_json_not_finite_naming_the_field(runs: RunsClient) -> None:
    meta = struct({"operator": "ana"})
    meta["score"] = float("nan")
    error = status.decode(error_of(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(meta=meta)))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_NOT_FINITE")
    assert [v.field for v in error.violations] == ["run.meta.score"]


def test_a_run_summary_nested_past_the_limit_is_json_too_deep(runs: RunsClient) -> None:
    levels: object = 1
    for _ in range(MAX_JSON_DEPTH):  # arrays: protobuf itself parses about 48 levels of them, 32 of objects
        levels = [levels]
    request = runs_pb2.CreateRunRequest(run=run_input(request_summary=struct({"k": levels})))
    error = status.decode(error_of(lambda: runs.CreateRun(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_TOO_DEEP")
    assert error.violations[0].field.startswith("run.request_summary.k[0][0]")


def test_a_list_filter_time_beyond_year_9999_is_timestamp_invalid(runs: RunsClient) -> None:
    request = runs_pb2.ListRunsRequest(created_after=timestamp_pb2.Timestamp(seconds=2**40))
    error = status.decode(error_of(lambda: runs.ListRuns(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TIMESTAMP_INVALID")
    assert [v.field for v in error.violations] == ["created_after"]


def test_an_imported_advisory_time_with_out_of_range_nanos_is_timestamp_invalid(runs: RunsClient) -> None:
    advisory = runs_pb2.AdvisoryInput(
        advisory_id="adv-1",
        kind=runs_pb2.ADVISORY_KIND_NOTE,
        created_at=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=1_000_000_000),
    )
    request = runs_pb2.CreateRunRequest(run=run_input(advisory_inputs=[advisory]))
    error = status.decode(error_of(lambda: runs.CreateRun(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TIMESTAMP_INVALID")
    assert [v.field for v in error.violations] == ["run.advisory_inputs[0].created_at"]


def test_binding_a_spec_nested_deeper_than_json_parses_blocks_with_a_reason(runs: RunsClient) -> None:
    session = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))
    runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(
            run=session.name,
            attachments=[
                runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=CLEAN_SVG),
                runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=b"[" * 100_000),
            ],
        )
    )
    answer = runs.BindCandidate(runs_pb2.BindCandidateRequest(run=session.name))
    assert answer.decision == runs_pb2.FEASIBILITY_DECISION_BLOCK
    assert "SPEC_UNPARSEABLE: nested too deeply to parse" in answer.reasons
