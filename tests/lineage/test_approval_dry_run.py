"""Approve with validate_only (AIP-163) over real gRPC on SQLite and PostgreSQL: it runs every check Approve runs,
is refused exactly as Approve would be, and writes nothing: no status change, no ledger leaf, no request id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from custody.lineage.v1 import lineage_pb2 as pb
from services.common import status
from services.common.db import create_engine
from services.lineage import tables
from tests.lineage.conftest import Client, Metadata, create
from tests.lineage.test_staleness_and_approvals import INTAKE, P, approve, approved_chain, chain, get

Rows = dict[str, list[tuple[Any, ...]]]


def every_row(database_url: str) -> Rows:
    """Every row of every lineage table (the ledger's leaves and the request ids kept for replay included)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                table.name: [tuple(row) for row in connection.execute(sa.select(table).order_by(*table.primary_key))]
                for table in tables.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def dry_run(client: Client, name: str, metadata: Metadata | None = None, **fields: Any) -> pb.Version:
    request = pb.ApproveRequest(
        name=name, rationale=fields.pop("rationale", "looks right"), validate_only=True, **fields
    )
    version: pb.Version = client.stub.Approve(request, metadata=metadata or client.reviewer, timeout=10)
    return version


def refusal(client: Client, request: pb.ApproveRequest, metadata: Metadata) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.Approve(request, metadata=metadata, timeout=10)
    return status.decode(raised.value)


# ---- a dry run that passes ----------------------------------------------------------------------------------------


def test_a_dry_run_of_an_approvable_version_returns_it_unchanged(client: Client) -> None:
    _, _, execution = approved_chain(client)
    before = get(client, execution)
    checked = dry_run(client, execution)
    assert checked.status == before.status
    assert checked.status.status == pb.STATUS_DRAFT
    assert (checked.name, checked.snapshot_sha256, checked.health) == (execution, before.snapshot_sha256, before.health)


def test_a_dry_run_writes_no_row_of_any_table(client: Client, database_url: str) -> None:
    _, _, execution = approved_chain(client)
    before = every_row(database_url)
    assert before["ledger_leaves"]  # the ledger is on: a write would show there
    dry_run(client, execution, request_id="approve-execution")
    assert every_row(database_url) == before


def test_a_dry_run_changes_no_status_history_and_appends_no_leaf(client: Client, database_url: str) -> None:
    _, _, execution = approved_chain(client)
    leaves = len(every_row(database_url)["ledger_leaves"])
    for _ in range(3):
        dry_run(client, execution, request_id="approve-execution")
    assert [s.status for s in get(client, execution).status_history] == [pb.STATUS_DRAFT]
    assert len(every_row(database_url)["ledger_leaves"]) == leaves


def test_the_real_approval_after_a_dry_run_with_the_same_request_id_approves(client: Client, database_url: str) -> None:
    """The dry run kept no request id: the approval with its key, even with another rationale, is a first call."""
    _, _, execution = approved_chain(client)
    dry_run(client, execution, request_id="approve-execution", rationale="first look")
    leaves = len(every_row(database_url)["ledger_leaves"])
    approved = approve(client, execution, request_id="approve-execution", rationale="ready to ship")
    assert (approved.status.status, approved.status.rationale) == (pb.STATUS_APPROVED, "ready to ship")
    assert [s.status for s in get(client, execution).status_history] == [pb.STATUS_DRAFT, pb.STATUS_APPROVED]
    assert len(every_row(database_url)["ledger_leaves"]) == leaves + 2  # the status change and its request id


def test_a_dry_run_with_the_request_id_of_a_done_approval_answers_as_its_replay(client: Client) -> None:
    intake, _, _ = chain(client)
    approved = approve(client, intake, request_id="approve-intake")
    assert dry_run(client, intake, request_id="approve-intake", rationale="looks right").status == approved.status


def test_a_flagged_version_passes_a_dry_run_and_stays_flagged(client: Client) -> None:
    intake, _, _ = chain(client)
    client.stub.Flag(pb.FlagRequest(name=intake, rationale="check"), metadata=client.runs, timeout=10)
    assert dry_run(client, intake).status.status == pb.STATUS_FLAGGED_FOR_REVIEW
    assert get(client, intake).status.status == pb.STATUS_FLAGGED_FOR_REVIEW


# ---- a dry run that is refused: exactly as Approve is ----------------------------------------------------------


def every_lineage_violation(client: Client) -> tuple[str, str, dict[str, Any]]:
    intake, strategy, _ = chain(client)
    execution = create(client, f"{P}/execution/posts", {"selected_jobs": ["fb_posts"]}, [strategy]).version.name
    create(client, f"{P}/strategy/main", {"summary": "v2"}, [intake])
    return execution, "reviewer", {}


def own_orphan(client: Client) -> tuple[str, str, dict[str, Any]]:
    return create(client, f"{P}/strategy/orphan", {"summary": "no intake"}).version.name, "operator", {}


def stale_itself(client: Client) -> tuple[str, str, dict[str, Any]]:
    _, _, execution = approved_chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    return execution, "reviewer", {}


def already_approved(client: Client) -> tuple[str, str, dict[str, Any]]:
    intake, _, _ = chain(client)
    approve(client, intake)
    return intake, "reviewer", {}


def rejected(client: Client) -> tuple[str, str, dict[str, Any]]:
    intake, _, _ = chain(client)
    client.stub.Reject(pb.RejectRequest(name=intake, rationale="off-brief"), metadata=client.reviewer, timeout=10)
    return intake, "reviewer", {}


def request_id_of_a_flag(client: Client) -> tuple[str, str, dict[str, Any]]:
    intake, _, _ = chain(client)
    request = pb.FlagRequest(name=intake, rationale="check", request_id="decision-1")
    client.stub.Flag(request, metadata=client.reviewer, timeout=10)
    return intake, "reviewer", {"request_id": "decision-1"}


def with_caller(caller: str, **fields: Any) -> Callable[[Client], tuple[str, str, dict[str, Any]]]:
    def setup(client: Client) -> tuple[str, str, dict[str, Any]]:
        _, _, execution = approved_chain(client)
        return execution, caller, fields

    return setup


def missing(client: Client) -> tuple[str, str, dict[str, Any]]:
    return f"{P}/intake/nobody/versions/1", "reviewer", {}


REFUSALS: dict[str, tuple[Callable[[Client], tuple[str, str, dict[str, Any]]], grpc.StatusCode, str]] = {
    "every lineage violation": (every_lineage_violation, grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_INCOMPLETE"),
    "the creator, with another violation": (own_orphan, grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL"),
    "a stale version": (stale_itself, grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_STALE"),
    "an approved version": (already_approved, grpc.StatusCode.FAILED_PRECONDITION, "STATUS_TRANSITION_INVALID"),
    "a rejected version": (rejected, grpc.StatusCode.FAILED_PRECONDITION, "STATUS_TRANSITION_INVALID"),
    "no such version": (missing, grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND"),
    "a request id another call used": (request_id_of_a_flag, grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED"),
    "a malformed request id": (
        with_caller("reviewer", request_id="no spaces"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_INVALID",
    ),
    "no rationale": (with_caller("reviewer", rationale=" "), grpc.StatusCode.INVALID_ARGUMENT, "RATIONALE_REQUIRED"),
    "a malformed name": (
        with_caller("reviewer", name="projects/acme/versions/1"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "NAME_INVALID",
    ),
    "a service": (with_caller("runs"), grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED"),
    "a system principal with the reviewer role": (
        with_caller("system"),
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_NOT_ALLOWED",
    ),
    "a person without the reviewer role": (
        with_caller("human_without_review"),
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_NOT_ALLOWED",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_dry_run_reports_exactly_what_approve_reports_and_neither_writes(
    client: Client, database_url: str, case: str
) -> None:
    setup, code, reason = REFUSALS[case]
    name, caller, fields = setup(client)
    fields = {"name": name, "rationale": "r", **fields}
    before = every_row(database_url)
    checked = refusal(client, pb.ApproveRequest(**fields, validate_only=True), getattr(client, caller))
    assert every_row(database_url) == before
    real = refusal(client, pb.ApproveRequest(**fields), getattr(client, caller))
    assert (checked.code, checked.reason) == (code, reason)
    assert checked == real  # code, message, reason, domain, metadata (every violation), BadRequest entries
    assert every_row(database_url) == before


def test_a_refused_dry_run_lists_every_violation_in_its_metadata(client: Client) -> None:
    name, _, _ = every_lineage_violation(client)
    request = pb.ApproveRequest(name=name, rationale="r", validate_only=True)
    error = refusal(client, request, client.reviewer)
    codes = ["LINEAGE_INCOMPLETE", "UPSTREAM_NOT_LATEST", "UPSTREAM_NOT_APPROVED", "LINEAGE_STALE"]
    assert error.metadata["violations"].split(",") == codes
    assert error.metadata["violation_count"] == "4"
    assert [v.description.split(":")[0] for v in error.violations] == codes
