"""Explanations that await review are decided by people: a reviewer approves or rejects a YELLOW or RED run's
explanation with a rationale, by compare-and-set on the version they read; the decision is final, kept in the
explanation's append-only history with its ledger leaf, and the ledger audit still holds."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout, save_endpoints
from services.common import status
from services.common.db import create_engine
from services.common.identity import OPERATOR_ROLE, Principal, PrincipalKind
from services.runs import ledger_audit, tables
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.runs.test_ledger import FAST, settled
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness, add_principal, bearer, second_reviewer_token
from tests.support.processes import clean_environment, custody
from tests.support.tamper import triggers_dropped

Metadata = tuple[tuple[str, str], ...]
RED = runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_RED, score=0.1, block_reason="feature too thin")
APPROVE, REJECT = runs_pb2.REVIEW_DECISION_APPROVE, runs_pb2.REVIEW_DECISION_REJECT


class Reviewing(RunsClient):
    """Calls as the operator (human:operator, every role: creates runs and asks for explanations) unless told
    otherwise; `reviewer` is a second person with the reviewer role only (human:rita), `operator_only` an operator
    without it (human:olga)."""

    def __init__(self, harness: ServiceHarness, layout: StateLayout, tokens: dict[str, str]) -> None:
        super().__init__(harness, layout)
        self.reviewer_token = tokens["reviewer"]
        self.reviewer = bearer(tokens["reviewer"])
        self.operator_only = bearer(tokens["operator_only"])


@pytest.fixture
def tokens(layout: StateLayout) -> dict[str, str]:
    """The people beside the operator, added before the services start."""
    olga = Principal("human:olga", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE}))
    return {"reviewer": second_reviewer_token(layout), "operator_only": add_principal(layout, olga)}


@pytest.fixture
def harness(layout: StateLayout, tokens: dict[str, str], database_url: str, tmp_path: Path) -> Iterator[ServiceHarness]:
    with ServiceHarness("ai_gateway", layout, factory=fake_gateway(ScriptedGateway())) as gateway:  # type: ignore[arg-type]
        settings = {
            "database_url": database_url,
            "blob_backend": "database",
            "blob_dir": str(tmp_path / "blobs"),
            "ai_gateway_address": gateway.address,
            **FAST,
        }
        with ServiceHarness("runs", layout, settings=settings) as harness:
            yield harness


@pytest.fixture
def runs(harness: ServiceHarness, layout: StateLayout, tokens: dict[str, str]) -> Reviewing:
    return Reviewing(harness, layout, tokens)


def explained(runs: RunsClient, decision: runs_pb2.Decision = RED, metadata: Metadata | None = None) -> runs_pb2.Run:
    """A run minted and explained (by the operator unless `metadata` says who)."""
    status_ = (
        runs_pb2.RUN_STATUS_OK if decision.risk_level == runs_pb2.RISK_LEVEL_GREEN else runs_pb2.RUN_STATUS_BLOCKED
    )
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(status=status_, decision=decision)), metadata=metadata)
    return runs.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=run.name), metadata=metadata)


def review(
    runs: Reviewing,
    run: runs_pb2.Run,
    decision: int = APPROVE,
    rationale: str = "matches the engine's block reason",
    version: int | None = None,
    metadata: Metadata | None = None,
) -> runs_pb2.Run:
    request = runs_pb2.ReviewExplanationRequest(
        run=run.name,
        decision=decision,  # type: ignore[arg-type]
        rationale=rationale,
        expected_version=run.explanation.version if version is None else version,
    )
    return runs.ReviewExplanation(request, metadata=runs.reviewer if metadata is None else metadata)


def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    error = status.decode(error_of(call))
    return error.code, error.reason


def history(database_url: str, run: runs_pb2.Run) -> list[dict[str, Any]]:
    table = tables.run_explanation_history
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(table).where(table.c.run_id == run.name.removeprefix("runs/")).order_by(table.c.version)
            )
            return [dict(row) for row in rows.mappings()]
    finally:
        engine.dispose()


# ---- deciding ---------------------------------------------------------------------------------------------------


def test_a_red_runs_explanation_awaits_review_at_its_version(runs: Reviewing) -> None:
    run = explained(runs)
    assert run.explanation.status == runs_pb2.EXPLANATION_STATUS_READY
    assert run.explanation.review_status == runs_pb2.REVIEW_STATUS_PENDING_REVIEW
    assert run.explanation.version == 3  # minted NONE (1), claimed PENDING (2), READY (3)
    assert not run.explanation.HasField("review")


def test_a_reviewer_approves_a_pending_explanation(runs: Reviewing) -> None:
    run = explained(runs)
    approved = review(runs, run)
    explanation = approved.explanation
    assert explanation.review_status == runs_pb2.REVIEW_STATUS_APPROVED
    assert (explanation.review.status, explanation.review.rationale) == (
        runs_pb2.REVIEW_STATUS_APPROVED,
        "matches the engine's block reason",
    )
    assert explanation.review.reviewed_by.id == "human:rita"
    assert explanation.version == explanation.review.version == run.explanation.version + 1
    assert explanation.review.ledger.origin == "localhost/custody/runs"
    assert explanation.summary == run.explanation.summary
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).explanation == explanation


def test_a_reviewer_rejects_a_pending_explanation_and_the_runs_decision_stands(runs: Reviewing) -> None:
    run = explained(runs)
    rejected = review(runs, run, REJECT, "blames the wrong feature")
    assert rejected.explanation.review_status == runs_pb2.REVIEW_STATUS_REJECTED
    assert rejected.explanation.review.rationale == "blames the wrong feature"
    assert (rejected.artifact_sha256, rejected.decision) == (run.artifact_sha256, run.decision)


def test_the_history_keeps_every_version_and_the_review_with_who_when_and_request_id(
    runs: Reviewing, database_url: str
) -> None:
    run = explained(runs)
    approved = review(runs, run, metadata=(*runs.reviewer, ("x-request-id", "review-call-1")))
    rows = history(database_url, run)
    assert [(r["version"], r["status"], r["review_status"]) for r in rows] == [
        (1, "NONE", None),
        (2, "PENDING", None),
        (3, "READY", None),
        (4, "READY", "APPROVED"),
    ]
    last = rows[-1]
    assert (last["changed_by"], last["changed_by_kind"], last["request_id"]) == ("human:rita", "human", "review-call-1")
    assert last["review_rationale"] == "matches the engine's block reason"
    assert last["changed_at_us"] == approved.explanation.review.review_time.ToMicroseconds()
    assert last["summary"] == run.explanation.summary and last["advisory_id"] == run.explanation.advisory_id


def test_the_history_is_append_only(runs: Reviewing, database_url: str) -> None:
    run = explained(runs)
    review(runs, run)
    engine = create_engine(database_url)
    try:
        table = tables.run_explanation_history
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), engine.begin() as connection:
            connection.execute(table.update().where(table.c.version == 4).values(review_status="REJECTED"))
    finally:
        engine.dispose()


def test_retrying_the_recorded_review_returns_the_run_unchanged(runs: Reviewing, database_url: str) -> None:
    run = explained(runs)
    first = review(runs, run)
    assert review(runs, run) == first  # the same decision, rationale and expected version: a retry
    assert len(history(database_url, run)) == 4


# ---- what is refused, and writes nothing ------------------------------------------------------------------------


def test_a_stale_expected_version_is_aborted_and_writes_nothing(runs: Reviewing, database_url: str) -> None:
    run = explained(runs)
    error = status.decode(error_of(lambda: review(runs, run, version=run.explanation.version - 1)))
    assert (error.code, error.reason) == (grpc.StatusCode.ABORTED, "EXPLANATION_CHANGED")
    assert error.metadata["current_version"] == str(run.explanation.version)
    assert len(history(database_url, run)) == 3
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).explanation == run.explanation


def test_of_concurrent_reviews_of_one_version_exactly_one_is_recorded(runs: Reviewing, database_url: str) -> None:
    run = explained(runs)
    who = [runs.reviewer, runs.operator]  # the operator asked for it: it may reject, not approve

    def attempt(index: int) -> str:
        try:
            review(runs, run, REJECT, f"reason {index}", metadata=who[index % 2])
        except grpc.RpcError as exc:
            return status.decode(exc).reason
        return "RECORDED"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes.count("RECORDED") == 1
    assert set(outcomes) - {"RECORDED"} <= {"EXPLANATION_NOT_PENDING", "EXPLANATION_CHANGED"}
    assert [r["review_status"] for r in history(database_url, run)].count("REJECTED") == 1


def test_an_explanation_already_reviewed_is_not_pending(runs: Reviewing) -> None:
    run = explained(runs)
    review(runs, run)
    error = status.decode(error_of(lambda: review(runs, run, REJECT, "changed my mind", version=4)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "EXPLANATION_NOT_PENDING")
    assert (error.metadata["review_status"], error.metadata["reviewed_by"]) == ("APPROVED", "human:rita")


def test_a_green_runs_auto_approved_explanation_is_not_pending(runs: Reviewing, database_url: str) -> None:
    run = explained(runs, runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.9))
    assert run.explanation.review_status == runs_pb2.REVIEW_STATUS_AUTO_APPROVED
    assert refusal(lambda: review(runs, run)) == (grpc.StatusCode.FAILED_PRECONDITION, "EXPLANATION_NOT_PENDING")
    assert len(history(database_url, run)) == 3


def test_a_run_not_explained_yet_has_nothing_to_review(runs: Reviewing) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(status=runs_pb2.RUN_STATUS_BLOCKED, decision=RED)))
    assert refusal(lambda: review(runs, run, version=1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "EXPLANATION_NOT_PENDING",
    )


@pytest.mark.parametrize("rationale", ["", "   \n\t"])
def test_a_review_without_a_rationale_is_refused_and_writes_nothing(
    runs: Reviewing, database_url: str, rationale: str
) -> None:
    run = explained(runs)
    error = status.decode(error_of(lambda: review(runs, run, rationale=rationale)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RATIONALE_REQUIRED")
    assert [v.field for v in error.violations] == ["rationale"]
    assert len(history(database_url, run)) == 3
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).explanation == run.explanation


def test_a_rationale_over_4000_characters_is_refused(runs: Reviewing) -> None:
    run = explained(runs)
    assert refusal(lambda: review(runs, run, rationale="x" * 4001)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RATIONALE_TOO_LONG",
    )


def test_an_expected_version_is_required(runs: Reviewing) -> None:
    run = explained(runs)
    assert refusal(lambda: review(runs, run, version=0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "EXPECTED_VERSION_INVALID",
    )


def test_a_review_without_a_decision_is_refused(runs: Reviewing) -> None:
    run = explained(runs)
    unspecified = runs_pb2.REVIEW_DECISION_UNSPECIFIED
    assert refusal(lambda: review(runs, run, unspecified)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REVIEW_DECISION_INVALID",
    )


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [
        ("runs/run_" + "e" * 32, grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND"),
        ("runs/../x", grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID"),
    ],
)
def test_an_unknown_or_malformed_run_is_refused(runs: Reviewing, name: str, code: grpc.StatusCode, reason: str) -> None:
    assert refusal(lambda: review(runs, runs_pb2.Run(name=name), version=3)) == (code, reason)


# ---- who may decide ---------------------------------------------------------------------------------------------


def test_a_service_may_not_review(runs: Reviewing, database_url: str) -> None:
    studio = runs.as_service("art_studio")
    run = explained(runs, metadata=studio)  # its own run, explained at its request
    assert refusal(lambda: review(runs, run, metadata=studio)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_NOT_ALLOWED",
    )
    assert len(history(database_url, run)) == 3


def test_a_person_without_the_reviewer_role_may_not_review(runs: Reviewing, database_url: str) -> None:
    run = explained(runs)
    assert refusal(lambda: review(runs, run, metadata=runs.operator_only)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_NOT_ALLOWED",
    )
    assert len(history(database_url, run)) == 3


def test_the_person_who_asked_for_the_explanation_and_created_the_run_cannot_approve_it(runs: Reviewing) -> None:
    run = explained(runs)  # human:operator, a reviewer too, created the run and asked for its explanation
    error = status.decode(error_of(lambda: review(runs, run, metadata=runs.operator)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL")
    assert [v.field for v in error.violations] == ["requested_by", "created_by"]


def test_asking_for_the_explanation_of_a_services_run_is_enough_to_be_refused_approving_it(runs: Reviewing) -> None:
    studio = runs.as_service("art_studio")
    run = runs.CreateRun(
        runs_pb2.CreateRunRequest(run=run_input(status=runs_pb2.RUN_STATUS_BLOCKED, decision=RED)), metadata=studio
    )
    run = runs.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=run.name))
    error = status.decode(error_of(lambda: review(runs, run, metadata=runs.operator)))
    assert [v.field for v in error.violations] == ["requested_by"]


def test_the_person_who_asked_for_the_explanation_may_reject_it(runs: Reviewing) -> None:
    run = explained(runs)
    rejected = review(runs, run, REJECT, "it invents a clamp", metadata=runs.operator)
    assert rejected.explanation.review.reviewed_by.id == "human:operator"


# ---- finding what awaits review -----------------------------------------------------------------------------------


def test_list_runs_finds_the_explanations_awaiting_review(runs: Reviewing) -> None:
    pending, decided = explained(runs), explained(runs)
    explained(runs, runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.9))
    review(runs, decided)

    def listed(review_status: int) -> list[str]:
        request = runs_pb2.ListRunsRequest(explanation_review_status=review_status)  # type: ignore[arg-type]
        return [r.name for r in runs.ListRuns(request).runs]

    assert listed(runs_pb2.REVIEW_STATUS_PENDING_REVIEW) == [pending.name]
    assert listed(runs_pb2.REVIEW_STATUS_APPROVED) == [decided.name]
    assert len(listed(runs_pb2.REVIEW_STATUS_AUTO_APPROVED)) == 1


def test_an_unknown_review_status_filter_is_refused(runs: Reviewing) -> None:
    request = runs_pb2.ListRunsRequest(explanation_review_status=99)  # type: ignore[arg-type]
    assert refusal(lambda: runs.ListRuns(request)) == (grpc.StatusCode.INVALID_ARGUMENT, "FILTER_INVALID")


# ---- the ledger audit -------------------------------------------------------------------------------------------


def test_the_audit_passes_after_reviews(runs: Reviewing, harness: ServiceHarness, database_url: str) -> None:
    review(runs, explained(runs))
    review(runs, explained(runs), REJECT, "wrong feature")
    explained(runs)  # one still pending
    report = ledger_audit.audit(settled(runs, harness, database_url))
    assert report.ok, report.findings


@pytest.mark.parametrize(
    ("column", "value"),
    [("review_status", "APPROVED"), ("reviewed_by", "human:mallory"), ("advisory_id", "adv-green"), ("version", 9)],
)
def test_a_rewritten_explanation_row_is_named_by_the_audit(
    runs: Reviewing, harness: ServiceHarness, database_url: str, column: str, value: object
) -> None:
    """The mutable row is not ledgered itself: the audit compares it with the last row of its ledgered history."""
    run = explained(runs)
    if column == "reviewed_by":
        review(runs, run, REJECT, "wrong feature")
    settings = settled(runs, harness, database_url)
    engine = create_engine(database_url)
    try:
        table = tables.run_explanations
        with engine.begin() as connection:
            connection.execute(
                table.update().where(table.c.run_id == run.name.removeprefix("runs/")).values({column: value})
            )
    finally:
        engine.dispose()
    report = ledger_audit.audit(settings)
    assert [(f.where, column in f.problem) for f in report.findings] == [(f"{run.name}/explanation", True)]


def test_the_audit_names_a_review_written_beside_its_ledger(
    runs: Reviewing, harness: ServiceHarness, database_url: str
) -> None:
    """A decision forged in both rows, the history's trigger dropped and restored: no leaf covers it."""
    run = explained(runs)
    settings = settled(runs, harness, database_url)
    engine = create_engine(database_url)
    run_id = run.name.removeprefix("runs/")
    try:
        history_table = tables.run_explanation_history
        with triggers_dropped(engine, "run_explanation_history") as connection:
            connection.execute(
                history_table.update()
                .where(history_table.c.run_id == run_id, history_table.c.version == 3)
                .values(review_status="APPROVED", review_rationale="forged")
            )
        with engine.begin() as connection:
            table = tables.run_explanations
            connection.execute(
                table.update()
                .where(table.c.run_id == run_id)
                .values(review_status="APPROVED", review_rationale="forged", reviewed_by="human:operator")
            )
    finally:
        engine.dispose()
    report = ledger_audit.audit(settings)
    assert not report.ok
    assert any(f"{run.name}/explanation/versions/3" in f.where for f in report.findings), report.findings


# ---- the CLI, as a subprocess -------------------------------------------------------------------------------------


@pytest.fixture
def cli(runs: Reviewing) -> Any:
    """`custody runs ARGS` as the operator, or as human:rita with as_reviewer; checks the exit code."""
    save_endpoints(runs.layout, {"runs": runs.harness.address})

    def run_cli(*args: str, expect: int = 0, as_reviewer: bool = False) -> Any:
        env = clean_environment(**({"CUSTODY_TOKEN": runs.reviewer_token} if as_reviewer else {}))
        result = custody("runs", *args, "--state-dir", str(runs.layout.root), env=env)
        assert result.returncode == expect, result.stdout + result.stderr
        return result

    return run_cli


def test_runs_list_calls_a_pending_explanation_pending_review_not_ready(cli: Any, runs: Reviewing) -> None:
    pending = explained(runs)
    green = explained(runs, runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.9))
    lines = cli("list").stdout.splitlines()
    assert "PENDING_REVIEW" in next(line for line in lines if pending.name in line)
    assert "READY" in next(line for line in lines if green.name in line)
    assert "READY" not in next(line for line in lines if pending.name in line).replace("PENDING_REVIEW", "")


def test_a_reviewer_finds_and_approves_an_explanation_from_the_cli(cli: Any, runs: Reviewing) -> None:
    run = explained(runs)
    assert run.name in cli("reviews", as_reviewer=True).stdout
    result = cli(
        "review-explanation", run.name, "--approve", "--rationale", "matches the block reason", as_reviewer=True
    )
    assert f"{run.name}: explanation APPROVED by human:rita (version 4)" in result.stdout
    assert run.name not in cli("reviews", as_reviewer=True).stdout
    assert "APPROVED" in next(line for line in cli("list").stdout.splitlines() if run.name in line)


def test_the_cli_review_refusals_name_the_reason(cli: Any, runs: Reviewing) -> None:
    run = explained(runs)
    own = cli("review-explanation", run.name, "--approve", "--rationale", "mine", expect=1)
    assert "FAILED_PRECONDITION SELF_APPROVAL" in own.stderr and "another person with the reviewer role" in own.stderr
    stale = cli("review-explanation", run.name, "--reject", "--rationale", "x", "--expected-version", "2", expect=1)
    assert "ABORTED EXPLANATION_CHANGED" in stale.stderr
    empty = cli("review-explanation", run.name, "--reject", "--rationale", " ", "--json", expect=1)
    assert '"reason": "RATIONALE_REQUIRED"' in empty.stderr
    both = cli("review-explanation", run.name, "--approve", "--reject", "--rationale", "x", expect=2)
    assert "Invalid value for --approve/--reject: give exactly one of --approve and" in both.stderr
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).explanation == run.explanation
