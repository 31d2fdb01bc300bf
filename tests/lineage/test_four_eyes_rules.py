"""Four eyes as the domain states it: the approval gate, confirming health, who may name a requester, and the
policy switch (pure: no database, no gRPC)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.identity import REVIEWER_ROLE, Principal, PrincipalKind
from services.lineage.domain import approval, four_eyes
from services.lineage.domain.model import (
    Health,
    HealthRecord,
    Metadata,
    Source,
    Status,
    StatusRecord,
    TypeDefinition,
    UpstreamState,
    Version,
    snapshot_document,
)
from services.lineage.domain.names import parse_version_name
from services.lineage.domain.policy import load_policy_file
from services.lineage.ledger_records import VERSIONS

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPERATOR = Principal("human:operator", PrincipalKind.HUMAN, frozenset({"operator", REVIEWER_ROLE}))
RITA = Principal("human:rita", PrincipalKind.HUMAN, frozenset({REVIEWER_ROLE}))
RUNS = Principal.service("runs")
BRIEF = "projects/p/artifacts/design_brief/b/versions/1"
RUN = "projects/p/artifacts/feasibility_run/b-c/versions/1"
CANDIDATE = "projects/p/artifacts/svg_candidate/b-c/versions/1"
RULES = TypeDefinition("feasibility_run", "design", "2", {"type": "object"}, requires=("svg_candidate",))
WAIVED = replace(RULES, four_eyes=False)


def version(name: str, created_by: Principal, requested_by: Principal | None = None, upstream: str = "") -> Version:
    return Version(
        name=parse_version_name(name),
        data={},
        metadata=Metadata("i", "r", 1.0, Source.HYBRID, schema_version="2"),
        upstream=(parse_version_name(upstream),) if upstream else (),
        data_sha256="0" * 64,
        snapshot_sha256="0" * 64,
        created_at=NOW,
        created_by=created_by,
        request_id="r",
        status=StatusRecord(Status.DRAFT, 1, NOW, created_by),
        health=HealthRecord(Health.VALID, 1, NOW, created_by),
        latest=True,
        requested_by=requested_by,
    )


def approved(name: str) -> dict[object, UpstreamState]:
    ref = parse_version_name(name)
    return {ref: UpstreamState(ref, Status.APPROVED, Health.VALID, "", 1)}


def refusal(v: Version, approver: Principal, definition: TypeDefinition = RULES) -> FailedPrecondition:
    upstream = approved(str(v.upstream[0])) if v.upstream else {}
    with pytest.raises(FailedPrecondition) as raised:
        approval.check_approval(v, definition, upstream, approver)  # type: ignore[arg-type]
    return raised.value


# ---- the approval gate --------------------------------------------------------------------------------------------


def test_the_creator_cannot_approve_their_own_version() -> None:
    error = refusal(version(BRIEF, OPERATOR), OPERATOR, replace(RULES, requires=()))
    assert error.reason == "SELF_APPROVAL"
    assert [(v.field, v.description.split(":")[0]) for v in error.violations] == [("created_by", "SELF_APPROVAL")]
    assert error.metadata["violations"] == "SELF_APPROVAL"


def test_the_principal_that_requested_a_verdict_cannot_approve_it() -> None:
    error = refusal(version(RUN, RUNS, requested_by=OPERATOR, upstream=CANDIDATE), OPERATOR)
    assert error.reason == "SELF_APPROVAL"
    assert [v.field for v in error.violations] == ["requested_by"]
    assert "human:operator requested" in error.violations[0].description
    assert "recorded by service:runs" in error.violations[0].description


def test_another_reviewer_approves_what_the_operator_created_and_requested() -> None:
    approval.check_approval(
        version(RUN, RUNS, requested_by=OPERATOR, upstream=CANDIDATE), RULES, approved(CANDIDATE), RITA
    )  # type: ignore[arg-type]


def test_a_creator_who_is_also_the_requester_is_named_for_both() -> None:
    error = refusal(version(RUN, OPERATOR, requested_by=OPERATOR, upstream=CANDIDATE), OPERATOR)
    assert [v.field for v in error.violations] == ["created_by", "requested_by"]


def test_self_approval_is_listed_first_with_every_other_violation() -> None:
    v = version(RUN, RUNS, requested_by=OPERATOR)  # no upstream svg_candidate: lineage incomplete as well
    error = refusal(v, OPERATOR)
    assert error.reason == "SELF_APPROVAL"
    assert error.metadata["violations"] == "SELF_APPROVAL,LINEAGE_INCOMPLETE"
    assert error.metadata["violation_count"] == "2"
    assert [v.field for v in error.violations] == ["requested_by", "upstream"]


@pytest.mark.parametrize(
    "alias",
    ["HUMAN:OPERATOR", "human:Operator", " human:operator ", "human:\uff4fperator", "human:operator\u00a0"],
    ids=["upper", "capitalised", "padded", "full-width-o", "nbsp"],
)
def test_a_principal_id_spelled_differently_is_still_the_same_person(alias: str) -> None:
    twin = Principal(alias, PrincipalKind.HUMAN, frozenset({REVIEWER_ROLE}))
    assert refusal(version(RUN, RUNS, requested_by=OPERATOR, upstream=CANDIDATE), twin).reason == "SELF_APPROVAL"
    assert refusal(version(RUN, twin, upstream=CANDIDATE), OPERATOR).reason == "SELF_APPROVAL"


def test_a_type_that_waives_four_eyes_lets_the_creator_and_requester_approve() -> None:
    v = version(RUN, OPERATOR, requested_by=OPERATOR, upstream=CANDIDATE)
    approval.check_approval(v, WAIVED, approved(CANDIDATE), OPERATOR)  # type: ignore[arg-type]


def test_the_gate_still_refuses_a_service_before_four_eyes() -> None:
    with pytest.raises(PermissionDenied) as raised:
        approval.check_approval(version(RUN, RUNS, upstream=CANDIDATE), RULES, approved(CANDIDATE), RUNS)  # type: ignore[arg-type]
    assert raised.value.reason == "APPROVER_NOT_HUMAN_REVIEWER"


# ---- confirming health ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("created_by", "requested_by"), [(OPERATOR, None), (RUNS, OPERATOR)])
def test_the_creator_or_requester_cannot_confirm_health(created_by: Principal, requested_by: Principal | None) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        four_eyes.ensure_not_own(version(RUN, created_by, requested_by), RULES, OPERATOR, "confirm the health of")
    assert raised.value.reason == "SELF_APPROVAL"
    assert "cannot confirm the health of" in raised.value.message


def test_another_reviewer_confirms_health_and_a_waiver_lets_the_creator() -> None:
    four_eyes.ensure_not_own(version(RUN, RUNS, OPERATOR), RULES, RITA, "confirm the health of")
    four_eyes.ensure_not_own(version(RUN, OPERATOR, OPERATOR), WAIVED, OPERATOR, "confirm the health of")


# ---- who may name a requester -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caller",
    [
        OPERATOR,
        RITA,
        Principal.service("ai_gateway"),
        Principal.service("lineage"),
        Principal("service:runs", PrincipalKind.HUMAN),
    ],
    ids=["operator", "reviewer", "ai_gateway", "lineage", "human-named-service-runs"],
)
def test_only_the_attesting_services_may_name_a_requester(caller: Principal) -> None:
    with pytest.raises(PermissionDenied) as raised:
        four_eyes.validate_requester(RITA, caller)
    assert raised.value.reason == "REQUESTED_BY_NOT_ALLOWED"


@pytest.mark.parametrize("service", ["runs", "art_studio"])
def test_runs_and_art_studio_name_their_caller(service: str) -> None:
    four_eyes.validate_requester(OPERATOR, Principal.service(service))
    four_eyes.validate_requester(None, OPERATOR)  # nobody named: anyone may create


@pytest.mark.parametrize(
    "requester",
    [
        Principal("system:custody", PrincipalKind.SYSTEM),
        Principal("service:runs", PrincipalKind.HUMAN),
        Principal("human:rita", PrincipalKind.SERVICE),
        Principal("rita", PrincipalKind.HUMAN),
        Principal("human:", PrincipalKind.HUMAN),
        Principal("human:ri ta", PrincipalKind.HUMAN),
        Principal("human:rita\n", PrincipalKind.HUMAN),
        Principal("human:" + "r" * 129, PrincipalKind.HUMAN),
    ],
    ids=["system", "kind-mismatch-human", "kind-mismatch-service", "no-kind", "empty", "space", "newline", "long"],
)
def test_a_malformed_requester_is_invalid(requester: Principal) -> None:
    with pytest.raises(InvalidArgument) as raised:
        four_eyes.validate_requester(requester, RUNS)
    assert raised.value.reason == "REQUESTED_BY_INVALID"


# ---- the record and the policy switch -------------------------------------------------------------------------------


def test_the_requester_is_part_of_the_snapshot_only_when_there_is_one() -> None:
    args = (parse_version_name(RUN), "0" * 64, Metadata("i", "r", 1.0, Source.HYBRID), (), NOW, RUNS, "r")
    assert "requested_by" not in snapshot_document(*args)  # versions recorded before four eyes keep their digest
    assert snapshot_document(*args, OPERATOR)["requested_by"] == {"id": "human:operator", "kind": "human"}


def test_a_version_leaf_leaves_out_a_null_requester_and_covers_a_set_one() -> None:
    row = {"id": 1, "name": RUN, "created_at_us": 1, "created_by_id": "service:runs", "request_id": "r"}
    row |= {"data_sha256": "0" * 64, "snapshot_sha256": "1" * 64}
    before_the_column = VERSIONS.leaf(row)
    assert VERSIONS.leaf({**row, "requested_by_id": None, "requested_by_kind": None}) == before_the_column
    named = VERSIONS.leaf({**row, "requested_by_id": "human:operator", "requested_by_kind": "human"})
    assert named.digests["row_sha256"] != before_the_column.digests["row_sha256"]
    other = VERSIONS.leaf({**row, "requested_by_id": "human:rita", "requested_by_kind": "human"})
    assert other.digests["row_sha256"] != named.digests["row_sha256"]


def test_four_eyes_required_keeps_a_definitions_digest_and_a_waiver_changes_it() -> None:
    assert "four_eyes" not in RULES.definition()  # types registered before four eyes keep their digest
    assert WAIVED.definition()["four_eyes"] is False
    assert WAIVED.definition_sha256 != RULES.definition_sha256


def _policy(tmp_path: Path, four_eyes_line: str) -> TypeDefinition:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            policy: p
            types:
              note:
                schema_version: "1"
                {four_eyes_line}
                schema: {{type: object}}
            """
        )
    )
    found = load_policy_file(path).type("note")
    assert found is not None
    return found


def test_a_policy_file_requires_four_eyes_unless_it_says_false(tmp_path: Path) -> None:
    assert _policy(tmp_path, "").four_eyes is True
    assert _policy(tmp_path, "four_eyes: true").four_eyes is True
    assert _policy(tmp_path, "four_eyes: false").four_eyes is False
