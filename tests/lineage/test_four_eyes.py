"""Four eyes over real gRPC on SQLite and PostgreSQL: who created or requested a version cannot approve it or
confirm its health, the refusal lists every violation, only runs and art_studio name requesters, and only a
policy file can waive the rule (GetPolicy shows which types do)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout
from services.common.hashing import sha256_canonical
from services.common.identity import Principal, PrincipalKind
from services.lineage.config import SHIPPED_POLICIES
from services.lineage.domain.model import Metadata, Source, snapshot_document
from services.lineage.domain.names import parse_version_name
from tests.lineage.conftest import Client, create, meta, rpc_error, start_client

D = "projects/fab/artifacts"
DIGESTS = {"svg_sha256": "a" * 64, "spec_sha256": "b" * 64}
OPERATOR = common_pb2.Principal(id="human:operator", kind=common_pb2.PRINCIPAL_KIND_HUMAN)


def approve(client: Client, name: str, metadata: Any) -> pb.Version:
    request = pb.ApproveRequest(name=name, rationale="reviewed")
    version: pb.Version = client.stub.Approve(request, metadata=metadata, timeout=30)
    return version


def get(client: Client, name: str) -> pb.Version:
    version: pb.Version = client.stub.GetVersion(pb.GetVersionRequest(name=name), metadata=client.operator, timeout=30)
    return version


def verdict_chain(client: Client, requested_by: common_pb2.Principal = OPERATOR) -> tuple[str, str, str]:
    """brief (the operator) -> candidate (art_studio, for the operator) -> verdict (runs, for `requested_by`), with
    brief and candidate approved by the second reviewer."""
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    approve(client, brief, client.reviewer)
    candidate = create(
        client, f"{D}/svg_candidate/rosette-a", DIGESTS, [brief], metadata=client.art_studio, requested_by=OPERATOR
    ).version.name
    approve(client, candidate, client.reviewer)
    data = {"verdict": "ALLOW", "run": "runs/run_1", "candidate": candidate, **DIGESTS}
    verdict = create(
        client, f"{D}/feasibility_run/rosette-a", data, [candidate], metadata=client.runs, requested_by=requested_by
    ).version.name
    return brief, candidate, verdict


# ---- approval -----------------------------------------------------------------------------------------------------


def test_the_creator_approving_their_own_version_is_self_approval_and_nothing_changes(client: Client) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=brief, rationale="mine"), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL")
    assert [(v.field, v.description.partition(":")[0]) for v in error.violations] == [("created_by", "SELF_APPROVAL")]
    assert (error.metadata["violations"], error.metadata["violation_count"]) == ("SELF_APPROVAL", "1")
    assert "another reviewer must" in error.message
    unchanged = get(client, brief)
    assert unchanged.status.status == pb.STATUS_DRAFT and len(unchanged.status_history) == 1


def test_the_second_reviewer_approves_what_the_operator_created(client: Client) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    approved = approve(client, brief, client.reviewer)
    assert (approved.status.status, approved.status.actor.id) == (pb.STATUS_APPROVED, "human:rita")


def test_self_approval_is_listed_with_every_other_violation(client: Client) -> None:
    orphan = create(client, "projects/acme/artifacts/strategy/orphan", {"summary": "no intake"}).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=orphan, rationale="r"), client.operator)
    assert error.reason == "SELF_APPROVAL"
    assert error.metadata["violations"] == "SELF_APPROVAL,LINEAGE_INCOMPLETE"
    assert [(v.field, v.description.partition(":")[0]) for v in error.violations] == [
        ("created_by", "SELF_APPROVAL"),
        ("upstream", "LINEAGE_INCOMPLETE"),
    ]
    other = rpc_error(client.stub.Approve, pb.ApproveRequest(name=orphan, rationale="r"), client.reviewer)
    assert other.metadata["violations"] == "LINEAGE_INCOMPLETE"  # another reviewer sees only what is left


def test_a_verdict_records_who_requested_it_and_they_cannot_approve_it(client: Client) -> None:
    _, _, verdict = verdict_chain(client)
    recorded = get(client, verdict)
    assert (recorded.created_by.id, recorded.requested_by.id) == ("service:runs", "human:operator")
    assert recorded.requested_by.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=verdict, rationale="r"), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL")
    assert [v.field for v in error.violations] == ["requested_by"]
    assert "human:operator requested" in error.message and "recorded by service:runs" in error.message
    assert approve(client, verdict, client.reviewer).status.actor.id == "human:rita"


def test_the_candidate_art_studio_recorded_for_the_operator_is_not_theirs_to_approve(client: Client) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    approve(client, brief, client.reviewer)
    candidate = create(
        client, f"{D}/svg_candidate/rosette-a", DIGESTS, [brief], metadata=client.art_studio, requested_by=OPERATOR
    ).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=candidate, rationale="r"), client.operator)
    assert (error.reason, [v.field for v in error.violations]) == ("SELF_APPROVAL", ["requested_by"])


def test_a_requester_named_in_another_case_is_still_the_requester(client: Client) -> None:
    shouted = common_pb2.Principal(id="human:OPERATOR", kind=common_pb2.PRINCIPAL_KIND_HUMAN)
    _, _, verdict = verdict_chain(client, requested_by=shouted)
    assert get(client, verdict).requested_by.id == "human:OPERATOR"  # recorded as given
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=verdict, rationale="r"), client.operator)
    assert error.reason == "SELF_APPROVAL"


def test_the_requester_is_hashed_into_the_snapshot(client: Client) -> None:
    _, _, verdict = verdict_chain(client)
    v = get(client, verdict)
    metadata = Metadata("test", "because", 0.9, Source.HUMAN, schema_version=v.metadata.schema_version)
    document = snapshot_document(
        parse_version_name(v.name),
        v.data_sha256,
        metadata,
        tuple(parse_version_name(u) for u in v.upstream),
        datetime.fromisoformat(v.create_time),
        Principal.service("runs"),
        v.request_id,
        Principal("human:operator", PrincipalKind.HUMAN),
    )
    assert sha256_canonical(document) == v.snapshot_sha256
    assert sha256_canonical({k: x for k, x in document.items() if k != "requested_by"}) != v.snapshot_sha256


# ---- confirming health --------------------------------------------------------------------------------------------


def _assess(client: Client, name: str, health: int, metadata: Any) -> pb.Version:
    request = pb.AssessHealthRequest(name=name, health=health, rationale="still holds")
    version: pb.Version = client.stub.AssessHealth(request, metadata=metadata, timeout=30)
    return version


def test_the_creator_cannot_confirm_their_stale_version_valid_but_another_reviewer_can(client: Client) -> None:
    intake = create(client, "projects/acme/artifacts/intake/brief", {"client": "acme", "objectives": ["grow"]})
    strategy = create(client, "projects/acme/artifacts/strategy/s", {"summary": "s"}, [intake.version.name])
    name = strategy.version.name
    create(client, "projects/acme/artifacts/intake/brief", {"client": "acme", "objectives": ["grow more"]})
    assert get(client, name).health.health == pb.HEALTH_STALE
    request = pb.AssessHealthRequest(name=name, health=pb.HEALTH_CONFIRMED_VALID, rationale="my own work holds")
    error = rpc_error(client.stub.AssessHealth, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL")
    assert [v.field for v in error.violations] == ["created_by"]
    assert "cannot confirm the health of" in error.message
    assert get(client, name).health.health == pb.HEALTH_STALE  # nothing changed
    confirmed = _assess(client, name, pb.HEALTH_CONFIRMED_VALID, client.reviewer)
    assert (confirmed.health.health, confirmed.health.actor.id) == (pb.HEALTH_CONFIRMED_VALID, "human:rita")


def test_the_requester_cannot_confirm_a_verdicts_health(client: Client) -> None:
    _, _, verdict = verdict_chain(client)
    request = pb.AssessHealthRequest(name=verdict, health=pb.HEALTH_CONFIRMED_VALID, rationale="r")
    error = rpc_error(client.stub.AssessHealth, request, client.operator)
    assert (error.reason, [v.field for v in error.violations]) == ("SELF_APPROVAL", ["requested_by"])


def test_the_creator_may_still_say_their_version_needs_revision(client: Client) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    assert _assess(client, brief, pb.HEALTH_NEEDS_REVISION, client.operator).health.health == pb.HEALTH_NEEDS_REVISION


# ---- who may name a requester -------------------------------------------------------------------------------------


def test_a_person_cannot_name_someone_else_as_requester_and_nothing_is_written(client: Client) -> None:
    rita = common_pb2.Principal(id="human:rita", kind=common_pb2.PRINCIPAL_KIND_HUMAN)
    request = pb.CreateVersionRequest(
        parent=f"{D}/design_brief/rosette", metadata=meta(), requested_by=rita, request_id="framed-1"
    )
    request.data.update({"prompt": "a rosette"})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "REQUESTED_BY_NOT_ALLOWED")
    listed = client.stub.ListVersions(pb.ListVersionsRequest(parent="projects/fab"), metadata=client.operator)
    assert list(listed.versions) == []


@pytest.mark.parametrize(
    ("principal_id", "kind"),
    [
        ("system:custody", common_pb2.PRINCIPAL_KIND_SYSTEM),
        ("human:operator", common_pb2.PRINCIPAL_KIND_UNSPECIFIED),
        ("service:runs", common_pb2.PRINCIPAL_KIND_HUMAN),
        ("operator", common_pb2.PRINCIPAL_KIND_HUMAN),
        ("human:oper ator", common_pb2.PRINCIPAL_KIND_HUMAN),
    ],
)
def test_runs_naming_a_malformed_requester_is_invalid_argument(client: Client, principal_id: str, kind: int) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    request = pb.CreateVersionRequest(
        parent=f"{D}/feasibility_run/rosette-a",
        metadata=meta(),
        upstream=[brief],
        requested_by=common_pb2.Principal(id=principal_id, kind=kind),
    )
    request.data.update({"verdict": "ALLOW", "run": "runs/run_1", "candidate": brief, **DIGESTS})
    error = rpc_error(client.stub.CreateVersion, request, client.runs)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUESTED_BY_INVALID")


def test_a_replay_naming_another_requester_is_a_reused_request_id(client: Client) -> None:
    brief = create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    fields: dict[str, Any] = {"metadata": client.art_studio, "request_id": "cand-1"}
    create(client, f"{D}/svg_candidate/rosette-a", DIGESTS, [brief], requested_by=OPERATOR, **fields)
    rita = common_pb2.Principal(id="human:rita", kind=common_pb2.PRINCIPAL_KIND_HUMAN)
    request = pb.CreateVersionRequest(
        parent=f"{D}/svg_candidate/rosette-a", metadata=meta(), upstream=[brief], requested_by=rita, request_id="cand-1"
    )
    request.data.update(DIGESTS)
    error = rpc_error(client.stub.CreateVersion, request, client.art_studio)
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


# ---- the policy switch --------------------------------------------------------------------------------------------

WAIVED_POLICY = """\
# Notes a person keeps for themselves: four eyes is waived, explicitly.
policy: notebook
types:
  note:
    schema_version: "1"
    four_eyes: false
    schema: {type: object}
"""


@pytest.fixture
def waiving(layout: StateLayout, database_url: str, tmp_path: Path) -> Iterator[Client]:
    policies = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, policies, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (policies / "notebook.yaml").write_text(textwrap.dedent(WAIVED_POLICY))
    yield from start_client(layout, database_url, policies_dir=str(policies))


def test_get_policy_shows_four_eyes_required_for_every_shipped_type(client: Client) -> None:
    for name in ("design_to_manufacture", "marketing"):
        policy = client.stub.GetPolicy(pb.GetPolicyRequest(name=name), metadata=client.operator)
        assert {t.name: t.four_eyes for t in policy.types} == {t.name: pb.FOUR_EYES_REQUIRED for t in policy.types}
        assert policy.types


def test_a_type_its_policy_file_waives_shows_it_and_lets_the_creator_approve(waiving: Client) -> None:
    policy = waiving.stub.GetPolicy(pb.GetPolicyRequest(name="notebook"), metadata=waiving.operator)
    assert [(t.name, t.four_eyes) for t in policy.types] == [("note", pb.FOUR_EYES_WAIVED)]
    note = create(waiving, "projects/me/artifacts/note/n", {"text": "mine"}).version.name
    assert approve(waiving, note, waiving.operator).status.actor.id == "human:operator"
    brief = create(waiving, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    error = rpc_error(waiving.stub.Approve, pb.ApproveRequest(name=brief, rationale="r"), waiving.operator)
    assert error.reason == "SELF_APPROVAL"  # the waiver is that type's only


def _register(client: Client, **fields: Any) -> pb.RegisterTypeRequest:
    request = pb.RegisterTypeRequest(name="storyboard", policy="film", schema_version="1", **fields)
    request.schema.update({"type": "object"})
    return request


def test_a_type_registered_at_run_time_requires_four_eyes(client: Client) -> None:
    registered = client.stub.RegisterType(_register(client), metadata=client.operator)
    assert registered.four_eyes == pb.FOUR_EYES_REQUIRED
    board = create(client, "projects/acme/artifacts/storyboard/s1", {}).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=board, rationale="r"), client.operator)
    assert error.reason == "SELF_APPROVAL"


def test_run_time_registration_cannot_waive_four_eyes_and_registers_nothing(client: Client) -> None:
    error = rpc_error(client.stub.RegisterType, _register(client, four_eyes=pb.FOUR_EYES_WAIVED), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "FOUR_EYES_WAIVER_NOT_ALLOWED")
    assert [v.field for v in error.violations] == ["four_eyes"]
    missing = rpc_error(client.stub.GetPolicy, pb.GetPolicyRequest(name="film"), client.operator)
    assert missing.reason == "POLICY_NOT_FOUND"


def test_run_time_registration_cannot_waive_four_eyes_of_a_waived_file_type_either(waiving: Client) -> None:
    request = _register(waiving, four_eyes=pb.FOUR_EYES_WAIVED)
    request.name, request.policy, request.schema_version = "note", "notebook", "2"
    error = rpc_error(waiving.stub.RegisterType, request, waiving.operator)
    assert error.reason == "FOUR_EYES_WAIVER_NOT_ALLOWED"
