"""Pure lineage logic: names, rules, policy validation, approval checks, plans, diffs and closure pages."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.identity import SYSTEM, Principal, PrincipalKind
from services.lineage.config import SHIPPED_POLICIES
from services.lineage.domain import approval, graph
from services.lineage.domain.diff import diff
from services.lineage.domain.model import (
    Conditional,
    Health,
    HealthRecord,
    Metadata,
    Source,
    Status,
    StatusRecord,
    TypeDefinition,
    UpstreamState,
    Version,
    normalize_json,
)
from services.lineage.domain.names import parse_entity_name, parse_list_scope, parse_version_name
from services.lineage.domain.plan import build_plan
from services.lineage.domain.policy import (
    PolicyError,
    load_policies,
    load_policy_file,
    required_types,
    selection_in,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REVIEWER = Principal("human:rita", PrincipalKind.HUMAN, frozenset({"reviewer"}))
OPERATOR_ONLY = Principal("human:otto", PrincipalKind.HUMAN, frozenset({"operator"}))
SERVICE = Principal.service("runs")
SYSTEM_REVIEWER = Principal("system:custody", PrincipalKind.SYSTEM, frozenset({"reviewer"}))
POLICIES = load_policies(SHIPPED_POLICIES)
MARKETING = POLICIES["marketing"]
EXECUTION = MARKETING.type("execution")


# ---- names --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "projects/a/artifacts/t/e/versions/0",
        "projects/a/artifacts/t/e/versions/01",
        "projects/a/artifacts/t/../versions/1",
        "projects/a/artifacts/t/e.json/versions/1",
        "projects/A/artifacts/t/e/versions/1",
        "projects/a/artifacts/T/e/versions/1",
        "projects/a/artifacts/t/e/versions/1/",
        "/projects/a/artifacts/t/e/versions/1",
        "projects/a/artifacts/t/e/versions/1\n",
        "projects/a/artifacts/t/e%2F/versions/1",
        "",
    ],
)
def test_malformed_version_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_version_name(name)
    assert raised.value.reason == "NAME_INVALID"


def test_a_version_name_round_trips() -> None:
    name = "projects/acme-1/artifacts/svg_candidate/Rosette_A-2/versions/12"
    parsed = parse_version_name(name)
    assert (parsed.project, parsed.artifact_type, parsed.entity, parsed.number) == (
        "acme-1",
        "svg_candidate",
        "Rosette_A-2",
        12,
    )
    assert str(parsed) == name


def test_list_scopes_are_project_type_or_entity() -> None:
    assert parse_list_scope("projects/p").artifact_type is None
    assert parse_list_scope("projects/p/artifacts/t").artifact_type == "t"
    assert parse_list_scope("projects/p/artifacts/t/e").entity == "e"
    with pytest.raises(InvalidArgument):
        parse_entity_name("projects/p/artifacts/t")


# ---- JSON normalisation -------------------------------------------------------------------------------------------


def test_integral_doubles_become_integers() -> None:
    assert normalize_json({"a": 3.0, "b": [1.5, 2.0]}) == {"a": 3, "b": [1.5, 2]}
    assert isinstance(normalize_json({"a": 3.0})["a"], int)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**60])
def test_numbers_json_cannot_carry_exactly_are_refused(bad: float) -> None:
    with pytest.raises(InvalidArgument) as raised:
        normalize_json({"x": bad})
    assert raised.value.reason == "DATA_INVALID"


# ---- rules --------------------------------------------------------------------------------------------------------


def test_execution_requires_creatives_only_for_creative_dependent_jobs() -> None:
    assert EXECUTION is not None
    assert required_types(EXECUTION, {"content_calendar", "email_sequence"}) == ("strategy",)
    assert required_types(EXECUTION, {"content_calendar", "ig_posts"}) == ("strategy", "creatives")


def test_selected_jobs_are_read_from_the_versions_data() -> None:
    assert EXECUTION is not None
    assert selection_in(EXECUTION, {"selected_jobs": ["ig_posts", 3]}) == {"ig_posts"}
    assert selection_in(EXECUTION, {"selected_jobs": "ig_posts"}) == frozenset()
    assert selection_in(EXECUTION, {}) == frozenset()


# ---- policy files -------------------------------------------------------------------------------------------------


def write_policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(body))
    return path


BASE = """
policy: demo
types:
  a: {schema_version: "1", schema: {type: object}}
  b: {schema_version: "1", schema: {type: object}, requires: [a]}
"""


def test_the_shipped_policies_load() -> None:
    assert set(POLICIES) == {"marketing", "design_to_manufacture"}
    assert [t.name for t in POLICIES["design_to_manufacture"].types] == [
        "design_brief",
        "svg_candidate",
        "feasibility_run",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (BASE.replace("requires: [a]", "requires: [zz]"), "unknown type 'zz'"),
        (BASE.replace("requires: [a]", "requires: [b]"), "cannot require itself"),
        (BASE + "  c: {schema_version: '1', schema: {type: objekt}}\n", "types.c.schema"),
        (BASE.replace("a: {schema_version", "a: {requires: [b], schema_version"), "requirement cycle: "),
        (BASE + "  C: {schema_version: '1', schema: {type: object}}\n", "type name must match"),
        (BASE + "extra: 1\n", "extra"),
        (
            BASE + "  c: {schema_version: '1', schema: {type: object},\n"
            "      conditional: [{requires: [a], when_any_selected: [x]}]}\n",
            "selection_field",
        ),
        (
            BASE + "  c:\n    schema_version: '1'\n    schema: {type: object}\n    selection_field: /jobs\n"
            "    conditional: [{requires: [a], when_any_selected: [confnote]}]\n"
            "job_groups: [{name: g, artifact_type: c, job_types: [carousel]}]\n",
            "unknown job type 'confnote'",
        ),
        (BASE + "job_groups: [{name: g, artifact_type: nosuch, job_types: [x]}]\n", "unknown type 'nosuch'"),
    ],
    ids=["unknown-type", "self", "bad-schema", "cycle", "type-name", "extra-key", "no-selection", "typo-job", "group"],
)
def test_an_invalid_policy_file_is_refused_naming_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(PolicyError, match=r"p\.yaml") as raised:
        load_policy_file(write_policy(tmp_path, body))
    assert message in str(raised.value)


def test_a_requirement_cycle_is_named(tmp_path: Path) -> None:
    body = BASE.replace("a: {schema_version", "a: {requires: [b], schema_version")
    with pytest.raises(PolicyError) as raised:
        load_policy_file(write_policy(tmp_path, body))
    assert "a -> b -> a" in str(raised.value)


def test_two_policy_files_cannot_define_one_type(tmp_path: Path) -> None:
    write_policy(tmp_path, BASE)
    (tmp_path / "q.yaml").write_text(BASE.replace("policy: demo", "policy: other"))
    with pytest.raises(PolicyError, match="already defined by policy 'demo'"):
        load_policies(tmp_path)


# ---- approval checks ----------------------------------------------------------------------------------------------


def version(
    name: str,
    upstream: tuple[str, ...] = (),
    data: dict | None = None,
    status: Status = Status.DRAFT,
    health: Health = Health.VALID,
) -> Version:
    return Version(
        name=parse_version_name(name),
        data=data or {},
        metadata=Metadata("i", "r", 1.0, Source.AI, schema_version="1"),
        upstream=tuple(parse_version_name(u) for u in upstream),
        data_sha256="0" * 64,
        snapshot_sha256="0" * 64,
        created_at=NOW,
        created_by=SERVICE,
        request_id="r",
        status=StatusRecord(status, 1, NOW, SERVICE),
        health=HealthRecord(
            health, 1, NOW, SERVICE, cause="projects/p/artifacts/intake/i/versions/2" if health is Health.STALE else ""
        ),
        latest=True,
    )


def state(name: str, status: Status = Status.APPROVED, health: Health = Health.VALID, latest: int = 1) -> UpstreamState:
    return UpstreamState(parse_version_name(name), status, health, "", latest)


STRATEGY = "projects/p/artifacts/strategy/s/versions/1"
CREATIVES = "projects/p/artifacts/creatives/c/versions/1"


def test_no_violations_for_complete_fresh_approved_lineage() -> None:
    assert EXECUTION is not None
    v = version("projects/p/artifacts/execution/e/versions/1", (STRATEGY,), {"selected_jobs": ["hashtag_sets"]})
    upstream = {v.upstream[0]: state(STRATEGY)}
    assert approval.approval_violations(v, EXECUTION, upstream) == []


def test_violations_are_reported_in_check_order_with_one_entry_each() -> None:
    assert EXECUTION is not None
    v = version(
        "projects/p/artifacts/execution/e/versions/1",
        (STRATEGY,),
        {"selected_jobs": ["ig_posts"]},
        health=Health.STALE,
    )
    upstream = {v.upstream[0]: state(STRATEGY, Status.DRAFT, Health.NEEDS_REVISION, latest=3)}
    found = approval.approval_violations(v, EXECUTION, upstream)
    assert [(x.code, x.field) for x in found] == [
        ("LINEAGE_INCOMPLETE", "upstream"),
        ("UPSTREAM_NOT_LATEST", "upstream[0]"),
        ("UPSTREAM_NOT_APPROVED", "upstream[0]"),
        ("LINEAGE_STALE", "upstream[0]"),
        ("LINEAGE_STALE", "name"),
    ]
    error = approval.approval_error(v.name, found)
    assert error.reason == "LINEAGE_INCOMPLETE"
    assert error.metadata["violation_count"] == "5"
    assert len(error.violations) == 5


@pytest.mark.parametrize("approver", [SERVICE, SYSTEM, SYSTEM_REVIEWER, OPERATOR_ONLY], ids=lambda p: p.id)
def test_the_domain_refuses_any_approver_but_a_human_reviewer(approver: Principal) -> None:
    assert EXECUTION is not None
    v = version("projects/p/artifacts/execution/e/versions/1", (STRATEGY,), {"selected_jobs": ["hashtag_sets"]})
    with pytest.raises(PermissionDenied) as raised:
        approval.check_approval(v, EXECUTION, {v.upstream[0]: state(STRATEGY)}, approver)
    assert raised.value.reason == "APPROVER_NOT_HUMAN_REVIEWER"


def test_a_human_reviewer_passes_the_gate() -> None:
    assert EXECUTION is not None
    v = version("projects/p/artifacts/execution/e/versions/1", (STRATEGY, CREATIVES), {"selected_jobs": ["ig_posts"]})
    approval.check_approval(v, EXECUTION, {u: state(str(u)) for u in v.upstream}, REVIEWER)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (Status.DRAFT, Status.APPROVED, True),
        (Status.DRAFT, Status.FLAGGED_FOR_REVIEW, True),
        (Status.FLAGGED_FOR_REVIEW, Status.REJECTED, True),
        (Status.FLAGGED_FOR_REVIEW, Status.FLAGGED_FOR_REVIEW, False),
        (Status.APPROVED, Status.REJECTED, False),
        (Status.REJECTED, Status.APPROVED, False),
    ],
)
def test_status_transitions(current: Status, target: Status, allowed: bool) -> None:
    name = parse_version_name("projects/p/artifacts/t/e/versions/1")
    if allowed:
        approval.ensure_transition(name, current, target)
    else:
        with pytest.raises(FailedPrecondition, match="cannot become"):
            approval.ensure_transition(name, current, target)


# ---- plans --------------------------------------------------------------------------------------------------------


def test_plan_jobs_come_in_topological_order() -> None:
    plan = build_plan(MARKETING, ["ig_posts", "carousel_templates", "campaign_strategy", "audience_insights"])
    position = {j.id: i for i, j in enumerate(plan.jobs)}
    for job in plan.jobs:
        assert all(position[d] < position[job.id] for d in job.depends_on)
    assert set(plan.jobs[-1].depends_on) == {
        "strategy:campaign_strategy",
        "strategy:audience_insights",
        "creative:carousel_templates",
    }


def test_plan_refuses_unknown_jobs_one_entry_each() -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_plan(MARKETING, ["ig_posts", "confnote"])
    assert [v.field for v in raised.value.violations] == ["selected_jobs[1]"]


def test_plan_rules_come_from_the_types() -> None:
    custom = TypeDefinition(
        "execution",
        "marketing",
        "2",
        {"type": "object"},
        ("strategy",),
        (Conditional(("creatives",), ("email_sequence",)),),
        "/selected_jobs",
    )
    types = tuple(custom if t.name == "execution" else t for t in MARKETING.types)
    from dataclasses import replace

    plan = build_plan(replace(MARKETING, types=types), ["email_sequence", "carousel_templates"])
    assert "creative:carousel_templates" in {d for j in plan.jobs for d in j.depends_on}


# ---- diff ---------------------------------------------------------------------------------------------------------


def test_diff_patch_applies_and_names_every_changed_path() -> None:
    import jsonpatch

    base = {"a": 1, "b": {"c": [1, 2]}, "gone": True}
    target = {"a": 2, "b": {"c": [1, 2, 3]}, "new": "x"}
    result = diff(base, target)
    assert jsonpatch.apply_patch(base, list(result.patch)) == target
    assert set(result.changed_paths) == {"/a", "/b/c/2", "/gone", "/new"}
    assert not result.identical


# ---- closure pages ------------------------------------------------------------------------------------------------


def test_bfs_depth_is_the_shortest_hop_count() -> None:
    edges = [(1, 2), (2, 3), (1, 3), (3, 4)]
    assert graph.bfs_depths(1, graph.adjacency_of(edges)) == {2: 1, 3: 1, 4: 2}


def test_pages_cover_the_closure_exactly_once_whatever_the_limits() -> None:
    depths = {n: 1 + n % 4 for n in range(2, 40)}
    for size, levels in ((1, 0), (5, 0), (7, 1), (100, 2), (3, 3)):
        seen, after = [], (0, 0)
        while True:
            page, truncated, cursor = graph.cut_page(depths, after, size, levels)
            seen += [n for _, n in page]
            if not truncated:
                break
            assert cursor is not None
            after = cursor
        assert sorted(seen) == sorted(depths) and len(seen) == len(set(seen))


def test_a_depth_limit_ends_the_page_at_that_level() -> None:
    page, truncated, cursor = graph.cut_page({2: 1, 3: 2, 4: 3}, (0, 0), 100, 2)
    assert page == [(1, 2), (2, 3)] and truncated and cursor == (2, 3)
