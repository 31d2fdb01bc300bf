"""Staleness propagation, health assessments and approval gates over real gRPC on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from tests.lineage.conftest import Client, create, rpc_error

P = "projects/acme/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}


def get(client: Client, name: str) -> pb.Version:
    return client.stub.GetVersion(pb.GetVersionRequest(name=name), metadata=client.operator, timeout=10)


def approve(client: Client, name: str, **fields: object) -> pb.Version:
    request = pb.ApproveRequest(name=name, rationale=str(fields.pop("rationale", "looks right")), **fields)
    return client.stub.Approve(request, metadata=fields.pop("metadata", client.reviewer), timeout=10)


def stale_names(client: Client, project: str = "acme") -> list[str]:
    page = client.stub.ListStale(pb.ListStaleRequest(parent=f"projects/{project}"), metadata=client.operator)
    return [v.name for v in page.versions]


def chain(client: Client) -> tuple[str, str, str]:
    """intake -> strategy -> execution (content_calendar: no creatives needed)."""
    intake = create(client, f"{P}/intake/brief", INTAKE).version.name
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake]).version.name
    execution = create(client, f"{P}/execution/q1", {"selected_jobs": ["content_calendar"]}, [strategy]).version.name
    return intake, strategy, execution


def approved_chain(client: Client) -> tuple[str, str, str]:
    intake, strategy, execution = chain(client)
    approve(client, intake)
    approve(client, strategy)
    return intake, strategy, execution


# ---- staleness ----------------------------------------------------------------------------------------------------


def test_a_new_version_marks_everything_transitively_downstream_stale(client: Client) -> None:
    _intake, strategy, execution = chain(client)
    response = create(client, f"{P}/intake/brief", {**INTAKE, "audience": "new"})
    assert response.marked_stale == 2
    assert stale_names(client) == [strategy, execution]
    for name in (strategy, execution):
        health = get(client, name).health
        assert health.health == pb.HEALTH_STALE
        assert health.cause == response.version.name


def test_staleness_is_recorded_in_the_health_history_with_its_cause(client: Client) -> None:
    _intake, strategy, _ = chain(client)
    cause = create(client, f"{P}/intake/brief", INTAKE).version.name
    history = get(client, strategy).health_history
    assert [h.health for h in history] == [pb.HEALTH_VALID, pb.HEALTH_STALE]
    assert history[1].cause == cause
    assert history[1].actor.id == "human:operator"


def test_the_snapshot_is_unchanged_when_it_becomes_stale(client: Client) -> None:
    _, strategy, _ = chain(client)
    before = get(client, strategy)
    create(client, f"{P}/intake/brief", INTAKE)
    after = get(client, strategy)
    assert (after.data_sha256, after.snapshot_sha256, after.create_time) == (
        before.data_sha256,
        before.snapshot_sha256,
        before.create_time,
    )


def test_a_diamond_marks_its_bottom_once(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version.name
    left = create(client, f"{P}/strategy/left", {"summary": "l"}, [intake]).version.name
    right = create(client, f"{P}/strategy/right", {"summary": "r"}, [intake]).version.name
    bottom = create(client, f"{P}/execution/q1", {"selected_jobs": ["content_calendar"]}, [left, right]).version.name
    response = create(client, f"{P}/intake/brief", INTAKE)
    assert response.marked_stale == 3
    assert len(get(client, bottom).health_history) == 2


def test_versions_of_unrelated_entities_stay_valid(client: Client) -> None:
    _, _strategy, _ = chain(client)
    other = create(client, f"{P}/intake/other", INTAKE).version.name
    unrelated = create(client, f"{P}/strategy/unrelated", {"summary": "u"}, [other]).version.name
    create(client, f"{P}/intake/brief", INTAKE)
    assert get(client, unrelated).health.health == pb.HEALTH_VALID
    assert unrelated not in stale_names(client)


def test_a_version_built_on_a_superseded_upstream_starts_stale(client: Client) -> None:
    old = create(client, f"{P}/intake/brief", INTAKE).version.name
    newer = create(client, f"{P}/intake/brief", INTAKE).version.name
    late = create(client, f"{P}/strategy/late", {"summary": "s"}, [old]).version
    assert late.health.health == pb.HEALTH_STALE
    assert late.health.cause == newer


def test_a_version_built_on_a_stale_upstream_starts_stale_with_the_same_cause(client: Client) -> None:
    _intake, strategy, _ = chain(client)
    cause = create(client, f"{P}/intake/brief", INTAKE).version.name
    late = create(client, f"{P}/execution/late", {"selected_jobs": ["content_calendar"]}, [strategy]).version
    assert (late.health.health, late.health.cause) == (pb.HEALTH_STALE, cause)


def test_list_stale_is_per_project(client: Client) -> None:
    chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    other = "projects/beta/artifacts"
    i = create(client, f"{other}/intake/brief", INTAKE).version.name
    create(client, f"{other}/strategy/main", {"summary": "s"}, [i])
    assert len(stale_names(client)) == 2
    assert stale_names(client, "beta") == []


# ---- health assessments -------------------------------------------------------------------------------------------


def assess(client: Client, name: str, health: int, **fields: object) -> pb.Version:
    request = pb.AssessHealthRequest(
        name=name, health=health, rationale=str(fields.pop("rationale", "checked")), **fields
    )
    return client.stub.AssessHealth(request, metadata=fields.pop("metadata", client.reviewer), timeout=10)


def test_a_reviewer_confirms_a_stale_version_valid_with_a_rationale(client: Client) -> None:
    _, strategy, _ = chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    version = assess(client, strategy, pb.HEALTH_CONFIRMED_VALID, rationale="audience change is irrelevant")
    assert version.health.health == pb.HEALTH_CONFIRMED_VALID
    assert version.health.actor.id == "human:rita"
    assert version.health.actor.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    assert version.health.rationale == "audience change is irrelevant"
    assert strategy not in stale_names(client)


def test_a_confirmed_valid_version_becomes_stale_again_on_the_next_revision(client: Client) -> None:
    _, strategy, _ = chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    assess(client, strategy, pb.HEALTH_CONFIRMED_VALID)
    create(client, f"{P}/intake/brief", INTAKE)
    assert get(client, strategy).health.health == pb.HEALTH_STALE


def test_needs_revision_is_not_overridden_by_staleness(client: Client) -> None:
    _, strategy, _ = chain(client)
    assess(client, strategy, pb.HEALTH_NEEDS_REVISION)
    create(client, f"{P}/intake/brief", INTAKE)
    assert get(client, strategy).health.health == pb.HEALTH_NEEDS_REVISION


def test_an_assessment_against_an_outdated_revision_is_aborted(client: Client) -> None:
    _, strategy, _ = chain(client)
    seen = get(client, strategy).health.revision
    create(client, f"{P}/intake/brief", INTAKE)
    request = pb.AssessHealthRequest(
        name=strategy, health=pb.HEALTH_CONFIRMED_VALID, rationale="r", expected_revision=seen
    )
    error = rpc_error(client.stub.AssessHealth, request, client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.ABORTED, "HEALTH_CHANGED")
    assert get(client, strategy).health.health == pb.HEALTH_STALE


@pytest.mark.parametrize("health", [pb.HEALTH_VALID, pb.HEALTH_STALE, pb.HEALTH_UNSPECIFIED])
def test_a_reviewer_cannot_set_other_health_values(client: Client, health: int) -> None:
    _, strategy, _ = chain(client)
    error = rpc_error(
        client.stub.AssessHealth, pb.AssessHealthRequest(name=strategy, health=health, rationale="r"), client.reviewer
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "HEALTH_INVALID")


# ---- approvals ----------------------------------------------------------------------------------------------------


def test_a_complete_fresh_approved_lineage_can_be_approved(client: Client) -> None:
    _, _, execution = approved_chain(client)
    version = approve(client, execution, rationale="ready to ship")
    assert version.status.status == pb.STATUS_APPROVED
    assert version.status.actor.id == "human:rita"
    assert version.status.actor.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    assert "reviewer" in version.status.actor.roles
    assert version.status.rationale == "ready to ship"
    assert version.status.update_time
    history = get(client, execution).status_history
    assert [s.status for s in history] == [pb.STATUS_DRAFT, pb.STATUS_APPROVED]


def test_approval_without_required_lineage_is_lineage_incomplete(client: Client) -> None:
    strategy = create(client, f"{P}/strategy/orphan", {"summary": "no intake"}).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=strategy, rationale="r"), client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_INCOMPLETE")
    assert error.metadata["violations"] == "LINEAGE_INCOMPLETE"
    assert get(client, strategy).status.status == pb.STATUS_DRAFT


def test_execution_with_creative_dependent_jobs_requires_creatives(client: Client) -> None:
    _intake, strategy, _ = approved_chain(client)
    execution = create(client, f"{P}/execution/posts", {"selected_jobs": ["ig_posts"]}, [strategy]).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), client.reviewer)
    assert error.reason == "LINEAGE_INCOMPLETE"
    assert "creatives" in error.violations[0].description


def test_execution_with_creatives_for_creative_dependent_jobs_is_approved(client: Client) -> None:
    _, strategy, _ = approved_chain(client)
    creatives = create(client, f"{P}/creatives/set", {"assets": []}, [strategy]).version.name
    approve(client, creatives)
    execution = create(
        client, f"{P}/execution/posts", {"selected_jobs": ["ig_posts", "email_sequence"]}, [strategy, creatives]
    ).version.name
    assert approve(client, execution).status.status == pb.STATUS_APPROVED


def test_every_violation_is_listed_and_nothing_changes(client: Client) -> None:
    intake, strategy, _ = chain(client)  # nothing approved
    execution = create(client, f"{P}/execution/posts", {"selected_jobs": ["fb_posts"]}, [strategy]).version.name
    create(client, f"{P}/strategy/main", {"summary": "v2"}, [intake])  # supersedes the strategy the execution uses
    before = get(client, execution)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), client.reviewer)
    codes = error.metadata["violations"].split(",")
    assert codes == ["LINEAGE_INCOMPLETE", "UPSTREAM_NOT_LATEST", "UPSTREAM_NOT_APPROVED", "LINEAGE_STALE"]
    assert error.metadata["violation_count"] == "4"
    assert [v.description.split(":")[0] for v in error.violations] == codes
    assert error.reason == "LINEAGE_INCOMPLETE"
    after = get(client, execution)
    assert after.status == before.status and list(after.status_history) == list(before.status_history)


def test_approval_of_a_version_built_on_a_stale_upstream_is_lineage_stale(client: Client) -> None:
    _intake, _strategy, execution = approved_chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), client.reviewer)
    assert error.reason == "LINEAGE_STALE"
    assert {v.field for v in error.violations} == {"upstream[0]", "name"}


def test_an_unapproved_upstream_blocks_approval(client: Client) -> None:
    intake, _strategy, execution = chain(client)
    approve(client, intake)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), client.reviewer)
    assert (error.reason, error.metadata["violations"]) == ("UPSTREAM_NOT_APPROVED", "UPSTREAM_NOT_APPROVED")


def test_a_confirmed_valid_upstream_no_longer_blocks_approval(client: Client) -> None:
    _intake, strategy, execution = approved_chain(client)
    create(client, f"{P}/intake/brief", INTAKE)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), client.reviewer)
    assert error.reason == "LINEAGE_STALE"
    assess(client, execution, pb.HEALTH_CONFIRMED_VALID)
    assess(client, strategy, pb.HEALTH_CONFIRMED_VALID)
    assert approve(client, execution).status.status == pb.STATUS_APPROVED


@pytest.mark.parametrize("caller", ["runs", "art_studio", "system", "human_without_review"])
def test_only_human_reviewers_can_approve(client: Client, caller: str) -> None:
    _, _, execution = approved_chain(client)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=execution, rationale="r"), getattr(client, caller))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")
    assert get(client, execution).status.status == pb.STATUS_DRAFT


@pytest.mark.parametrize("method", ["Reject", "AssessHealth"])
def test_a_service_cannot_reject_or_assess(client: Client, method: str) -> None:
    _, strategy, _ = chain(client)
    request = (
        pb.RejectRequest(name=strategy, rationale="r")
        if method == "Reject"
        else pb.AssessHealthRequest(name=strategy, health=pb.HEALTH_CONFIRMED_VALID, rationale="r")
    )
    error = rpc_error(getattr(client.stub, method), request, client.runs)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")


def test_approving_an_approved_version_is_an_invalid_transition(client: Client) -> None:
    intake, _, _ = chain(client)
    approve(client, intake)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=intake, rationale="again"), client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STATUS_TRANSITION_INVALID")


def test_an_approval_replayed_with_its_request_id_returns_the_approved_version(client: Client) -> None:
    intake, _, _ = chain(client)
    first = approve(client, intake, request_id="approve-1")
    again = approve(client, intake, request_id="approve-1")
    assert again.status == first.status
    assert len(get(client, intake).status_history) == 2


def test_an_approval_without_rationale_is_invalid_argument(client: Client) -> None:
    intake, _, _ = chain(client)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=intake, rationale="  "), client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RATIONALE_REQUIRED")


def test_a_service_can_flag_a_draft_and_the_flag_shows_its_kind(client: Client) -> None:
    intake, _, _ = chain(client)
    version = client.stub.Flag(pb.FlagRequest(name=intake, rationale="feasibility BLOCK"), metadata=client.runs)
    assert version.status.status == pb.STATUS_FLAGGED_FOR_REVIEW
    assert (version.status.actor.id, version.status.actor.kind) == ("service:runs", common_pb2.PRINCIPAL_KIND_SERVICE)


def test_a_flagged_version_can_be_approved_by_a_reviewer(client: Client) -> None:
    intake, _, _ = chain(client)
    client.stub.Flag(pb.FlagRequest(name=intake, rationale="check"), metadata=client.runs)
    assert approve(client, intake).status.status == pb.STATUS_APPROVED


def test_a_rejected_version_is_final(client: Client) -> None:
    intake, _, _ = chain(client)
    rejected = client.stub.Reject(pb.RejectRequest(name=intake, rationale="off-brief"), metadata=client.reviewer)
    assert rejected.status.status == pb.STATUS_REJECTED
    for call, request in (
        (client.stub.Approve, pb.ApproveRequest(name=intake, rationale="r")),
        (client.stub.Flag, pb.FlagRequest(name=intake, rationale="r")),
    ):
        error = rpc_error(call, request, client.reviewer)
        assert error.reason == "STATUS_TRANSITION_INVALID"
