"""Advisories are append-only links; explanations go through ai_gateway with compare-and-set and tiered review."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.errors import Unavailable
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness


@pytest.fixture
def run(runs: RunsClient) -> runs_pb2.Run:
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))


def attach(runs: RunsClient, run: runs_pb2.Run, advisory_id: str = "adv-001", **fields: object) -> runs_pb2.Run:
    return runs.AttachAdvisory(
        runs_pb2.AttachAdvisoryRequest(
            run=run.name,
            advisory_id=advisory_id,
            kind=fields.pop("kind", runs_pb2.ADVISORY_KIND_ADVISORY),  # type: ignore[arg-type]
            engine_id="cam-checker",
            engine_version="3.2",
            **fields,  # type: ignore[arg-type]
        )
    )


def test_advisory_is_linked_with_its_engine_and_caller(runs: RunsClient, run: runs_pb2.Run) -> None:
    linked = attach(runs, run, summary="check clamp")
    (advisory,) = linked.advisory_inputs
    assert (advisory.advisory_id, advisory.engine_id, advisory.engine_version) == ("adv-001", "cam-checker", "3.2")
    assert advisory.created_by.id == "human:operator" and advisory.request_id
    assert advisory.review_status == runs_pb2.REVIEW_STATUS_NOT_REQUIRED


def test_attaching_the_same_advisory_twice_keeps_one_link(runs: RunsClient, run: runs_pb2.Run) -> None:
    first = attach(runs, run)
    assert attach(runs, run) == first
    assert len(runs.ListAdvisories(runs_pb2.ListAdvisoriesRequest(run=run.name)).advisories) == 1


def test_concurrent_attaches_of_one_advisory_make_one_link(runs: RunsClient, run: runs_pb2.Run) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: attach(runs, run, "adv-race"), range(8)))
    assert len(runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).advisory_inputs) == 1


def test_advisories_are_listed_in_the_order_attached(runs: RunsClient, run: runs_pb2.Run) -> None:
    for index in range(5):
        attach(runs, run, f"adv-{index}")
    first = runs.ListAdvisories(runs_pb2.ListAdvisoriesRequest(run=run.name, page_size=3))
    rest = runs.ListAdvisories(
        runs_pb2.ListAdvisoriesRequest(run=run.name, page_size=3, page_token=first.next_page_token)
    )
    assert [a.advisory_id for a in [*first.advisories, *rest.advisories]] == [f"adv-{i}" for i in range(5)]
    assert rest.next_page_token == ""


@pytest.mark.parametrize("advisory_id", ["", "has space", "../../x", "a" * 129])
def test_bad_advisory_id_is_refused(runs: RunsClient, run: runs_pb2.Run, advisory_id: str) -> None:
    error = status.decode(error_of(lambda: attach(runs, run, advisory_id)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ADVISORY_INVALID")
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).advisory_inputs == []


def test_unknown_advisory_kind_is_refused(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: attach(runs, run, kind=runs_pb2.ADVISORY_KIND_UNSPECIFIED)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ADVISORY_INVALID")


def test_advisory_on_an_unknown_run_is_not_found(runs: RunsClient) -> None:
    ghost = runs_pb2.Run(name="runs/run_" + "e" * 32)
    error = status.decode(error_of(lambda: attach(runs, ghost)))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


@pytest.fixture
def script() -> ScriptedGateway:
    return ScriptedGateway()


@pytest.fixture
def explaining(layout: StateLayout, script: ScriptedGateway, database_url: str, tmp_path: Path) -> Iterator[RunsClient]:
    """runs wired to a scripted ai_gateway over real gRPC."""
    with ServiceHarness("ai_gateway", layout, factory=fake_gateway(script)) as gateway:  # type: ignore[arg-type]
        settings = {
            "database_url": database_url,
            "blob_dir": str(tmp_path / "blobs"),
            "ai_gateway_address": gateway.address,
        }
        with ServiceHarness("runs", layout, settings=settings) as harness:
            yield RunsClient(harness, layout)


def explain(runs: RunsClient, run: runs_pb2.Run) -> runs_pb2.Run:
    return runs.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=run.name))


def test_green_explanation_is_ready_and_auto_approved_by_the_system(
    explaining: RunsClient, script: ScriptedGateway
) -> None:
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    explained = explain(explaining, run)
    assert explained.explanation.status == runs_pb2.EXPLANATION_STATUS_READY
    assert explained.explanation.summary == script.content
    (advisory,) = explained.advisory_inputs
    assert advisory.kind == runs_pb2.ADVISORY_KIND_EXPLANATION
    assert advisory.review_status == runs_pb2.REVIEW_STATUS_AUTO_APPROVED
    assert (advisory.reviewed_by.id, advisory.reviewed_by.kind) == ("system:custody", 3)  # PRINCIPAL_KIND_SYSTEM
    assert advisory.engine_id == "local/local-explainer"
    assert "risk level: GREEN" in script.prompts[0]


def test_red_explanation_awaits_human_review(explaining: RunsClient) -> None:
    blocked = run_input(
        status=runs_pb2.RUN_STATUS_BLOCKED,
        decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_RED, score=0.1, block_reason="feature too thin"),
    )
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=blocked))
    (advisory,) = explain(explaining, run).advisory_inputs
    assert advisory.review_status == runs_pb2.REVIEW_STATUS_PENDING_REVIEW
    assert not advisory.HasField("reviewed_by")


def test_concurrent_requests_make_one_gateway_call(explaining: RunsClient, script: ScriptedGateway) -> None:
    script.delay_s = 0.5
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: explain(explaining, run), range(4)))
    assert len(script.prompts) == 1
    statuses = sorted(a.explanation.status for a in answers)
    assert statuses.count(runs_pb2.EXPLANATION_STATUS_READY) == 1
    assert statuses.count(runs_pb2.EXPLANATION_STATUS_PENDING) == 3


def test_a_ready_explanation_is_not_asked_for_again(explaining: RunsClient, script: ScriptedGateway) -> None:
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    first = explain(explaining, run)
    assert explain(explaining, run) == first
    assert len(script.prompts) == 1


def test_gateway_failure_ends_in_error_and_still_returns_the_run(
    explaining: RunsClient, script: ScriptedGateway
) -> None:
    script.fail_with = Unavailable("PROVIDER_UNAVAILABLE", "upstream provider is down")
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    failed = explain(explaining, run)
    assert failed.name == run.name
    assert failed.explanation.status == runs_pb2.EXPLANATION_STATUS_ERROR
    assert "PROVIDER_UNAVAILABLE" in failed.explanation.error
    assert failed.advisory_inputs == []


def test_an_errored_explanation_can_be_retried(explaining: RunsClient, script: ScriptedGateway) -> None:
    script.fail_with = Unavailable("PROVIDER_UNAVAILABLE", "down")
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    explain(explaining, run)
    script.fail_with = None
    assert explain(explaining, run).explanation.status == runs_pb2.EXPLANATION_STATUS_READY
    assert len(script.prompts) == 2


def test_explanation_history_is_append_only(explaining: RunsClient) -> None:
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    explain(explaining, run)
    import sqlalchemy as sa

    from services.common.db import create_engine

    engine = create_engine(explaining.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT version, status FROM run_explanation_history ORDER BY version")
            ).all()
        assert [tuple(r) for r in rows] == [(1, "NONE"), (2, "PENDING"), (3, "READY")]
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), engine.begin() as connection:
            connection.execute(sa.text("UPDATE run_explanation_history SET status = 'NONE'"))
    finally:
        engine.dispose()


def test_explaining_an_unknown_run_is_not_found(explaining: RunsClient) -> None:
    error = status.decode(error_of(lambda: explain(explaining, runs_pb2.Run(name="runs/run_" + "d" * 32))))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


def test_an_explanation_asked_for_by_a_person_names_them_to_the_gateway(
    explaining: RunsClient, script: ScriptedGateway
) -> None:
    explain(explaining, explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input())))
    (request,) = script.requests
    assert (request.on_behalf_of.id, request.on_behalf_of.kind) == ("human:operator", common_pb2.PRINCIPAL_KIND_HUMAN)
    assert list(request.on_behalf_of.roles) == []


def test_an_explanation_asked_for_by_a_service_names_no_person(explaining: RunsClient, script: ScriptedGateway) -> None:
    studio = explaining.as_service("art_studio")
    run = explaining.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=studio)
    explaining.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=run.name), metadata=studio)
    (request,) = script.requests
    assert not request.HasField("on_behalf_of")
