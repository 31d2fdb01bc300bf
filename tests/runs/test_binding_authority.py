"""Only the engine gives verdicts, decided runs are sealed, and a service acts only on runs it created: each rule
attacked with real gRPC, with the service tokens the suite hands out, and with a direct write to the database."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa

from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.db import create_engine
from services.runs.feasibility import ENGINE_VERSION
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import RunsClient, error_of, run_input


def attach(runs: RunsClient, run: str, kind: str, data: bytes, metadata: object = None) -> list[str]:
    items = [runs_pb2.NewAttachment(kind=kind, filename="f.bin", data=data)]
    request = runs_pb2.BatchCreateAttachmentsRequest(run=run, attachments=items)
    return [a.name for a in runs.BatchCreateAttachments(request, metadata=metadata).attachments]


def upload(runs: RunsClient, run: str, kind: str, data: bytes) -> runs_pb2.Attachment:
    header = runs_pb2.AttachmentHeader(run=run, kind=kind, filename="f.bin")
    messages = iter([runs_pb2.UploadAttachmentRequest(header=header), runs_pb2.UploadAttachmentRequest(chunk=data)])
    return runs.UploadAttachment(messages)


@pytest.fixture
def decided(runs: RunsClient) -> tuple[str, str]:
    """(session, verdict): a session with a clean candidate, and the run the engine minted from it."""
    session = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session"))).name
    attach(runs, session, "geometry_svg", CLEAN_SVG)
    attach(runs, session, "geometry_spec_json", CLEAN_SPEC)
    verdict = runs.BindCandidate(runs_pb2.BindCandidateRequest(run=session)).run.name
    return session, verdict


def count_runs(runs: RunsClient) -> int:
    return len(runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs)


# ---- only the engine gives verdicts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mode": "candidate_binding"}, "run.mode"),
        ({"mode": "Candidate_Binding"}, "run.mode"),
        ({"tool_id": "custody-feasibility"}, "run.tool_id"),
        ({"tool_id": "CUSTODY-FEASIBILITY-v2"}, "run.tool_id"),
        ({"engine_version": ENGINE_VERSION}, "run.engine_version"),
        ({"engine_version": "custody-feasibility/9.9.9"}, "run.engine_version"),
        ({"engine_version": "custody-feasibility"}, "run.engine_version"),
    ],
)
def test_create_run_refuses_to_pass_for_an_engine_verdict(runs: RunsClient, fields: dict[str, str], field: str) -> None:
    error = status.decode(error_of(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(**fields)))))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ENGINE_RESERVED")
    assert [v.field for v in error.violations] == [field]
    assert count_runs(runs) == 0


def test_a_service_cannot_claim_to_be_the_engine_either(runs: RunsClient) -> None:
    forged = run_input(mode="candidate_binding", tool_id="custody-feasibility", engine_version=ENGINE_VERSION)
    request = runs_pb2.CreateRunRequest(run=forged)
    error = status.decode(error_of(lambda: runs.CreateRun(request, metadata=runs.as_service("art_studio"))))
    assert error.reason == "ENGINE_RESERVED" and len(error.violations) == 3


def test_the_engine_mints_its_own_mode_tool_and_version(runs: RunsClient, decided: tuple[str, str]) -> None:
    run = runs.GetRun(runs_pb2.GetRunRequest(name=decided[1]))
    assert (run.mode, run.tool_id, run.engine_version) == ("candidate_binding", "custody-feasibility", ENGINE_VERSION)


# ---- decided runs are sealed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["geometry_svg", "gcode", "report_json", "other"])
def test_a_run_minted_by_the_engine_takes_no_attachment(runs: RunsClient, decided: tuple[str, str], kind: str) -> None:
    for call in (lambda: attach(runs, decided[1], kind, b"x"), lambda: upload(runs, decided[1], kind, b"x")):
        error = status.decode(error_of(call))
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_SEALED")
        assert error.metadata["scope"] == "all"
    assert {a.kind for a in runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=decided[1])).attachments} == {
        "geometry_svg",
        "geometry_spec_json",
    }


@pytest.mark.parametrize("kind", ["geometry_svg", "geometry_spec_json"])
def test_a_run_bound_from_takes_no_new_geometry(runs: RunsClient, decided: tuple[str, str], kind: str) -> None:
    session, verdict = decided
    for call in (lambda: attach(runs, session, kind, b"<svg/>"), lambda: upload(runs, session, kind, b"<svg/>")):
        error = status.decode(error_of(call))
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_SEALED")
        assert error.metadata["sealed_by"] == verdict
    latest = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=session, kind=kind, latest_only=True))
    assert latest.attachments[0].digest.sha256 in {a.digest.sha256 for a in _bound(runs, verdict)}


def _bound(runs: RunsClient, verdict: str) -> list[runs_pb2.Attachment]:
    return list(runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=verdict)).attachments)


def test_a_run_bound_from_still_takes_other_kinds(runs: RunsClient, decided: tuple[str, str]) -> None:
    assert attach(runs, decided[0], "report_json", b"{}")


def test_the_database_refuses_an_attachment_a_seal_forbids(
    runs: RunsClient, decided: tuple[str, str], database_url: str
) -> None:
    """Someone with write access to the database, bypassing the service, still cannot add geometry to a decided
    run: the trigger refuses the row."""
    engine = create_engine(database_url)
    session = decided[0].removeprefix("runs/")
    with engine.connect() as connection:
        row = (
            connection.execute(
                sa.text("SELECT * FROM attachments WHERE run_id = :run AND kind = 'geometry_svg'"), {"run": session}
            )
            .mappings()
            .first()
        )
    assert row is not None
    forged = {**row, "id": "att_" + "f" * 32, "idempotency_key": None, "batch_position": 0}
    columns = ", ".join(forged)
    with pytest.raises(sa.exc.IntegrityError, match="sealed"), engine.begin() as connection:
        connection.execute(
            sa.text(f"INSERT INTO attachments ({columns}) VALUES ({', '.join(':' + c for c in forged)})"), forged
        )
    engine.dispose()


# ---- services act only on their own runs ----------------------------------------------------------------------


def test_a_service_cannot_read_or_touch_a_run_it_did_not_create(runs: RunsClient, decided: tuple[str, str]) -> None:
    studio = runs.as_service("art_studio")
    session, verdict = decided
    attempts = {
        "GetRun": lambda: runs.GetRun(runs_pb2.GetRunRequest(name=verdict), metadata=studio),
        "ListAttachments": lambda: runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=session), metadata=studio),
        "BatchCreateAttachments": lambda: attach(runs, session, "report_json", b"{}", metadata=studio),
        "AttachAdvisory": lambda: runs.AttachAdvisory(
            runs_pb2.AttachAdvisoryRequest(run=verdict, advisory_id="a1", kind=runs_pb2.ADVISORY_KIND_NOTE),
            metadata=studio,
        ),
        "ListAdvisories": lambda: runs.ListAdvisories(runs_pb2.ListAdvisoriesRequest(run=verdict), metadata=studio),
        "BindCandidate": lambda: runs.BindCandidate(runs_pb2.BindCandidateRequest(run=session), metadata=studio),
        "DiffRuns": lambda: runs.DiffRuns(runs_pb2.DiffRunsRequest(left=session, right=verdict), metadata=studio),
        "VerifyRun": lambda: runs.VerifyRun(runs_pb2.VerifyRunRequest(name=verdict), metadata=studio),
        "SuggestExplanation": lambda: runs.SuggestExplanation(
            runs_pb2.SuggestExplanationRequest(name=verdict), metadata=studio
        ),
    }
    before = count_runs(runs)
    for rpc, call in attempts.items():
        error = status.decode(error_of(call))
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "RUN_NOT_OWNED"), rpc
    assert count_runs(runs) == before
    assert runs.ListAdvisories(runs_pb2.ListAdvisoriesRequest(run=verdict)).advisories == []


def test_a_service_cannot_read_an_attachment_of_another_principals_run(
    runs: RunsClient, decided: tuple[str, str]
) -> None:
    name = _bound(runs, decided[1])[0].name
    call = runs.stub.ReadAttachment(
        runs_pb2.ReadAttachmentRequest(name=name), metadata=runs.as_service("art_studio"), timeout=30
    )
    error = status.decode(error_of(lambda: list(call)))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "RUN_NOT_OWNED")


def test_a_service_lists_only_its_own_runs(runs: RunsClient, decided: tuple[str, str]) -> None:
    studio = runs.as_service("art_studio")
    own = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=studio).name
    listed = runs.ListRuns(runs_pb2.ListRunsRequest(), metadata=studio).runs
    assert [r.name for r in listed] == [own]
    error = status.decode(
        error_of(lambda: runs.ListRuns(runs_pb2.ListRunsRequest(created_by="human:operator"), metadata=studio))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "RUN_NOT_OWNED")


def test_a_service_works_on_the_runs_it_created(runs: RunsClient) -> None:
    studio = runs.as_service("art_studio")
    own = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=studio).name
    assert attach(runs, own, "geometry_svg", CLEAN_SVG, metadata=studio)
    assert runs.GetRun(runs_pb2.GetRunRequest(name=own), metadata=studio).name == own


def test_operators_and_reviewers_read_every_run(runs: RunsClient, decided: tuple[str, str]) -> None:
    studio = runs.as_service("art_studio")
    own = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=studio).name
    assert runs.GetRun(runs_pb2.GetRunRequest(name=own)).name == own
    assert runs.GetRun(runs_pb2.GetRunRequest(name=decided[1])).name == decided[1]
