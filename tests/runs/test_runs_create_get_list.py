"""CreateRun, GetRun, ListRuns: create-only, hash-stamped, idempotent, strictly named, filtered and paged."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.db import create_engine
from services.common.hashing import canonical_json, sha256_bytes
from tests.runs.conftest import RunsClient, error_of, run_input


def create(runs: RunsClient, request_id: str = "", **overrides: object) -> runs_pb2.Run:
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(**overrides), request_id=request_id))


def test_created_run_is_stamped_by_the_server(runs: RunsClient) -> None:
    run = create(runs)
    assert run.name.startswith("runs/run_") and len(run.name) == len("runs/run_") + 32
    assert run.created_by.id == "human:operator"
    assert run.request_id.startswith("req-") and len(run.trace_id) == 32
    assert run.explanation.status == runs_pb2.EXPLANATION_STATUS_NONE


def test_artifact_hash_is_the_sha256_of_the_canonical_record(runs: RunsClient) -> None:
    run = create(runs)
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT artifact_json FROM runs")).scalar_one()
    engine.dispose()
    import json

    assert sha256_bytes(canonical_json(json.loads(stored))) == run.artifact_sha256


def test_get_returns_what_create_returned(runs: RunsClient) -> None:
    run = create(runs)
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)) == run


def test_same_request_id_and_content_returns_the_original(runs: RunsClient) -> None:
    first = create(runs, request_id="mint-1")
    again = create(runs, request_id="mint-1")
    assert again == first
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1


def test_same_request_id_with_different_content_is_already_exists(runs: RunsClient) -> None:
    create(runs, request_id="mint-2")
    error = status.decode(error_of(lambda: create(runs, request_id="mint-2", tool_id="other-tool")))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def test_32_concurrent_identical_creates_make_exactly_one_run(runs: RunsClient) -> None:
    with ThreadPoolExecutor(max_workers=32) as pool:
        names = set(pool.map(lambda _: create(runs, request_id="burst-1").name, range(32)))
    assert len(names) == 1
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1


def test_the_same_key_from_another_caller_is_another_run(runs: RunsClient) -> None:
    mine = create(runs, request_id="shared-key")
    theirs = runs.CreateRun(
        runs_pb2.CreateRunRequest(run=run_input(), request_id="shared-key"), metadata=runs.as_service("art_studio")
    )
    assert mine.name != theirs.name


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hashes": runs_pb2.Hashes(feasibility_sha256="")}, "run.hashes.feasibility_sha256"),
        ({"hashes": runs_pb2.Hashes(feasibility_sha256="ABC")}, "run.hashes.feasibility_sha256"),
        ({"hashes": runs_pb2.Hashes(feasibility_sha256="a" * 64, gcode_sha256="zz")}, "run.hashes.gcode_sha256"),
        ({"status": runs_pb2.RUN_STATUS_UNSPECIFIED}, "run.status"),
        ({"mode": ""}, "run.mode"),
        ({"tool_id": "has spaces"}, "run.tool_id"),
        ({"decision": runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=math.nan)}, "run.decision.score"),
        ({"decision": runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=1.5)}, "run.decision.score"),
        ({"status": runs_pb2.RUN_STATUS_BLOCKED}, "run.decision.block_reason"),
        ({"status": runs_pb2.RUN_STATUS_ERROR}, "run.decision.risk_level"),
    ],
)
def test_invalid_run_is_refused_naming_the_field_and_nothing_is_written(
    runs: RunsClient, overrides: dict[str, object], field: str
) -> None:
    error = status.decode(error_of(lambda: create(runs, **overrides)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RUN_INVALID")
    assert field in {v.field for v in error.violations}
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []


def test_malformed_request_id_is_refused(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: create(runs, request_id="not ok/../x")))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_INVALID")


@pytest.mark.parametrize(
    "name", ["runs/../x", "runs/run_123", "run_" + "a" * 32, "runs/run_" + "a" * 32 + "/x", "", "runs/RUN_" + "a" * 32]
)
def test_bad_names_are_invalid_argument_never_paths(runs: RunsClient, name: str) -> None:
    error = status.decode(error_of(lambda: runs.GetRun(runs_pb2.GetRunRequest(name=name))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")


def test_unknown_run_is_not_found(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: runs.GetRun(runs_pb2.GetRunRequest(name="runs/run_" + "0" * 32))))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


def test_unauthenticated_caller_cannot_mint(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=())))
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []


def test_service_outside_the_call_graph_cannot_mint(runs: RunsClient) -> None:
    error = status.decode(
        error_of(
            lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=runs.as_service("lineage"))
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")


def test_the_database_refuses_to_change_a_run(runs: RunsClient) -> None:
    create(runs)
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), engine.begin() as connection:
            connection.execute(sa.text("UPDATE runs SET status = 'OK'"))
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM runs"))
    finally:
        engine.dispose()


def _blocked(reason: str = "too thin") -> dict[str, object]:
    return {
        "status": runs_pb2.RUN_STATUS_BLOCKED,
        "decision": runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_RED, score=0.2, block_reason=reason),
    }


def test_list_filters_by_status_risk_mode_tool_and_creator(runs: RunsClient) -> None:
    ok = create(runs)
    blocked = create(runs, **_blocked())
    other_tool = create(runs, tool_id="laser")
    by_service = runs.CreateRun(
        runs_pb2.CreateRunRequest(run=run_input(mode="art")), metadata=runs.as_service("art_studio")
    )

    def names(**filters: object) -> set[str]:
        return {r.name for r in runs.ListRuns(runs_pb2.ListRunsRequest(**filters)).runs}

    assert names(status=runs_pb2.RUN_STATUS_BLOCKED) == {blocked.name}
    assert names(risk_level=runs_pb2.RISK_LEVEL_GREEN) == {ok.name, other_tool.name, by_service.name}
    assert names(tool_id="laser") == {other_tool.name}
    assert names(mode="art") == {by_service.name}
    assert names(created_by="service:art_studio") == {by_service.name}
    assert names(explanation_status=runs_pb2.EXPLANATION_STATUS_NONE) == {
        ok.name,
        blocked.name,
        other_tool.name,
        by_service.name,
    }


def test_list_filters_by_time_range(runs: RunsClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    run = create(runs)
    after = datetime.now(UTC) + timedelta(seconds=1)

    def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
        value = timestamp_pb2.Timestamp()
        value.FromDatetime(moment)
        return value

    inside = runs.ListRuns(runs_pb2.ListRunsRequest(created_after=stamp(before), created_before=stamp(after)))
    assert [r.name for r in inside.runs] == [run.name]
    assert runs.ListRuns(runs_pb2.ListRunsRequest(created_after=stamp(after))).runs == []
    error = status.decode(
        error_of(
            lambda: runs.ListRuns(runs_pb2.ListRunsRequest(created_after=stamp(after), created_before=stamp(before)))
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FILTER_INVALID")


def test_pages_are_newest_first_complete_and_disjoint(runs: RunsClient) -> None:
    created = [create(runs).name for _ in range(7)]
    seen, token = [], ""
    while True:
        page = runs.ListRuns(runs_pb2.ListRunsRequest(page_size=3, page_token=token))
        seen.extend(r.name for r in page.runs)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))


def test_page_token_of_another_filter_is_refused(runs: RunsClient) -> None:
    for _ in range(3):
        create(runs)
    token = runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1)).next_page_token
    error = status.decode(
        error_of(lambda: runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1, page_token=token, mode="other")))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


def test_unknown_filter_enum_is_refused(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: runs.ListRuns(runs_pb2.ListRunsRequest(status=42))))  # type: ignore[arg-type]
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FILTER_INVALID")


def test_a_name_with_a_trailing_newline_is_invalid(runs: RunsClient) -> None:
    run = create(runs)
    error = status.decode(error_of(lambda: runs.GetRun(runs_pb2.GetRunRequest(name=run.name + "\n"))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")
