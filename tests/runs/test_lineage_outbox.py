"""A run minted from a candidate with a lineage version is recorded in lineage through an outbox: never lost
while lineage is down, delivered once it is back, never duplicated."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.errors import InvalidArgument, Unavailable
from services.common.hashing import sha256_bytes
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.support.fake_lineage import ScriptedLineage, fake_lineage
from tests.support.harness import ServiceHarness
from tests.support.processes import free_port

CANDIDATE = "projects/guitars/artifacts/svg_candidate/brief-1-candidate-0/versions/1"
CANDIDATE_DATA = {"svg_sha256": sha256_bytes(CLEAN_SVG), "spec_sha256": sha256_bytes(CLEAN_SPEC)}


def scripted(**fields: Any) -> ScriptedLineage:
    """A lineage that holds CANDIDATE, recorded with the clean candidate's digests."""
    return ScriptedLineage(existing={CANDIDATE: CANDIDATE_DATA}, **fields)


@pytest.fixture
def lineage_port() -> int:
    return free_port()


@pytest.fixture
def runs(layout: StateLayout, database_url: str, tmp_path: Path, lineage_port: int) -> Iterator[RunsClient]:
    settings = {
        "database_url": database_url,
        "blob_dir": str(tmp_path / "blobs"),
        "lineage_address": f"127.0.0.1:{lineage_port}",
    }
    with ServiceHarness("runs", layout, settings=settings) as harness:
        yield RunsClient(harness, layout)


def lineage_on(layout: StateLayout, port: int, script: ScriptedLineage) -> ServiceHarness:
    return ServiceHarness("lineage", layout, factory=fake_lineage(script), settings={"port": str(port)})  # type: ignore[arg-type]


def bind(runs: RunsClient, candidate: str = CANDIDATE) -> runs_pb2.Run:
    session = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))
    items = [
        runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=CLEAN_SVG),
        runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=CLEAN_SPEC),
    ]
    runs.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=session.name, attachments=items))
    return runs.BindCandidate(runs_pb2.BindCandidateRequest(run=session.name, lineage_candidate=candidate)).run


def eventually(
    runs: RunsClient, name: str, done: Callable[[runs_pb2.Run], bool], timeout_s: float = 20
) -> runs_pb2.Run:
    deadline = time.monotonic() + timeout_s
    while True:
        run = runs.GetRun(runs_pb2.GetRunRequest(name=name))
        if done(run) or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_the_minted_run_is_recorded_in_lineage_derived_from_its_candidate(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    script = scripted()
    with lineage_on(layout, lineage_port, script):
        run = bind(runs)
        delivered = eventually(runs, run.name, lambda r: r.lineage.state == "DELIVERED")
    assert delivered.lineage.version.startswith("projects/guitars/artifacts/feasibility_run/brief-1-candidate-0/")
    (request,) = script.requests
    assert list(request.upstream) == [CANDIDATE]
    assert request.data["verdict"] == "ALLOW" and request.data["run"] == run.name
    assert request.request_id == f"runs-lineage-{run.name.removeprefix('runs/')}"
    assert script.request_ids == [run.request_id]  # the lineage write carries the mint's request id


def test_the_lineage_record_names_the_principal_that_requested_the_binding(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    script = scripted()
    with lineage_on(layout, lineage_port, script):
        run = bind(runs)  # as the operator
        eventually(runs, run.name, lambda r: r.lineage.state == "DELIVERED")
    (request,) = script.requests
    assert (request.requested_by.id, request.requested_by.kind) == ("human:operator", common_pb2.PRINCIPAL_KIND_HUMAN)
    assert run.created_by.id == "human:operator"  # the same principal the run itself records
    assert not request.requested_by.roles  # lineage records who, not what they could do


def test_mints_succeed_while_lineage_cannot_record_and_records_arrive_once_it_can(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    script = scripted(refuse_with=Unavailable("LINEAGE_BUSY", "try later"))
    with lineage_on(layout, lineage_port, script):
        minted = [bind(runs) for _ in range(3)]
        pending = [eventually(runs, r.name, lambda r: r.lineage.attempts >= 1, timeout_s=10) for r in minted]
        assert all(r.lineage.state == "PENDING" and r.lineage.error for r in pending)
        script.refuse_with = None
        delivered = [eventually(runs, r.name, lambda r: r.lineage.state == "DELIVERED", timeout_s=40) for r in minted]
    assert all(r.lineage.state == "DELIVERED" for r in delivered)
    assert script.distinct_keys == {f"runs-lineage-{r.name.removeprefix('runs/')}" for r in minted}
    assert len(script.versions) == 3  # nothing lost, nothing duplicated


def test_a_record_lineage_refuses_is_failed_with_the_reason_and_not_retried(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    script = scripted(refuse_with=InvalidArgument("DATA_SCHEMA_VIOLATION", "verdict must be ALLOW or BLOCK"))
    with lineage_on(layout, lineage_port, script):
        run = eventually(runs, bind(runs).name, lambda r: r.lineage.state == "FAILED")
        time.sleep(1.5)
    assert run.lineage.state == "FAILED" and "DATA_SCHEMA_VIOLATION" in run.lineage.error
    assert len(script.requests) == 1


def test_a_malformed_lineage_candidate_is_refused_before_minting(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: bind(runs, candidate="projects/x/../versions/1")))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BINDING_INVALID")
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1  # just the design session


# ---- a verdict names its candidate ---------------------------------------------------------------------------


def test_the_minted_run_and_its_lineage_record_name_the_candidate_and_both_digests(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    script = scripted()
    with lineage_on(layout, lineage_port, script):
        run = bind(runs)
        eventually(runs, run.name, lambda r: r.lineage.state == "DELIVERED")
    assert run.request_summary["candidate"] == {"name": CANDIDATE, **CANDIDATE_DATA}
    (request,) = script.requests
    assert request.data["candidate"] == CANDIDATE
    assert (request.data["svg_sha256"], request.data["spec_sha256"]) == (
        CANDIDATE_DATA["svg_sha256"],
        CANDIDATE_DATA["spec_sha256"],
    )


@pytest.mark.parametrize(
    ("recorded", "field"),
    [
        ({**CANDIDATE_DATA, "svg_sha256": "0" * 64}, "lineage_candidate.svg_sha256"),
        ({**CANDIDATE_DATA, "spec_sha256": "0" * 64}, "lineage_candidate.spec_sha256"),
        ({"svg_sha256": CANDIDATE_DATA["svg_sha256"]}, "lineage_candidate.spec_sha256"),
        ({"svg_sha256": 7, "spec_sha256": CANDIDATE_DATA["spec_sha256"]}, "lineage_candidate.svg_sha256"),
    ],
)
def test_a_candidate_recorded_with_other_digests_is_refused_and_nothing_is_minted_or_sent(
    runs: RunsClient, layout: StateLayout, lineage_port: int, recorded: dict[str, Any], field: str
) -> None:
    script = ScriptedLineage(existing={CANDIDATE: recorded})
    with lineage_on(layout, lineage_port, script):
        error = status.decode(error_of(lambda: bind(runs)))
        time.sleep(0.3)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CANDIDATE_MISMATCH")
    assert [v.field for v in error.violations] == [field]
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1  # just the design session
    assert script.requests == []


def test_a_candidate_lineage_does_not_hold_is_not_found_and_nothing_is_minted(
    runs: RunsClient, layout: StateLayout, lineage_port: int
) -> None:
    with lineage_on(layout, lineage_port, ScriptedLineage()):
        error = status.decode(error_of(lambda: bind(runs)))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CANDIDATE_NOT_FOUND")
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1


def test_binding_while_lineage_is_down_is_unavailable_and_mints_nothing(runs: RunsClient) -> None:
    error = status.decode(error_of(lambda: bind(runs)))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "LINEAGE_UNAVAILABLE")
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == 1


def test_a_lineage_candidate_of_another_type_is_refused_before_lineage_is_asked(runs: RunsClient) -> None:
    brief = "projects/guitars/artifacts/design_brief/brief-1/versions/1"
    error = status.decode(error_of(lambda: bind(runs, candidate=brief)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BINDING_INVALID")
