"""Lineage closures, plans, policies, runtime type registration and bad input for every RPC, over real gRPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from custody.lineage.v1 import lineage_pb2 as pb
from services.common.db import create_engine
from tests.lineage.conftest import Client, create, meta, rpc_error

P = "projects/acme/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}


def downstream(client: Client, name: str, **fields: Any) -> pb.LineageResponse:
    return client.stub.GetDownstream(pb.GetDownstreamRequest(name=name, **fields), metadata=client.operator, timeout=10)


def layered(client: Client) -> dict[str, str]:
    """intake -> s1, s2 -> e1 (s1, s2), e2 (s2): depths 1, 1, 2, 2."""
    names = {"intake": create(client, f"{P}/intake/brief", INTAKE).version.name}
    for s in ("s1", "s2"):
        names[s] = create(client, f"{P}/strategy/{s}", {"summary": s}, [names["intake"]]).version.name
    names["e1"] = create(
        client, f"{P}/execution/e1", {"selected_jobs": ["content_calendar"]}, [names["s1"], names["s2"]]
    ).version.name
    names["e2"] = create(
        client, f"{P}/execution/e2", {"selected_jobs": ["content_calendar"]}, [names["s2"]]
    ).version.name
    return names


def test_downstream_returns_the_complete_closure_breadth_first(client: Client) -> None:
    names = layered(client)
    page = downstream(client, names["intake"])
    assert [(n.name, n.depth) for n in page.nodes] == [
        (names["s1"], 1),
        (names["s2"], 1),
        (names["e1"], 2),
        (names["e2"], 2),
    ]
    assert (page.truncated, page.next_page_token, page.total_size) == (False, "", 4)
    assert list(page.nodes[2].upstream) == [names["s1"], names["s2"]]


def test_upstream_returns_everything_a_version_was_derived_from(client: Client) -> None:
    names = layered(client)
    page = client.stub.GetUpstream(pb.GetUpstreamRequest(name=names["e1"]), metadata=client.operator)
    assert [(n.name, n.depth) for n in page.nodes] == [(names["s1"], 1), (names["s2"], 1), (names["intake"], 2)]


def test_a_size_limit_truncates_with_a_token_that_continues(client: Client) -> None:
    names = layered(client)
    first = downstream(client, names["intake"], page_size=3)
    assert first.truncated and first.next_page_token and len(first.nodes) == 3
    rest = downstream(client, names["intake"], page_size=3, page_token=first.next_page_token)
    assert [n.name for n in rest.nodes] == [names["e2"]]
    assert not rest.truncated and not rest.next_page_token


def test_a_depth_limit_truncates_instead_of_cutting_silently(client: Client) -> None:
    names = layered(client)
    first = downstream(client, names["intake"], max_depth=1)
    assert [n.depth for n in first.nodes] == [1, 1]
    assert first.truncated and first.total_size == 4
    rest = downstream(client, names["intake"], max_depth=1, page_token=first.next_page_token)
    assert [n.depth for n in rest.nodes] == [2, 2] and not rest.truncated


def test_a_leaf_has_an_empty_untruncated_closure(client: Client) -> None:
    names = layered(client)
    page = downstream(client, names["e1"])
    assert (list(page.nodes), page.truncated, page.total_size) == ([], False, 0)


def test_a_page_token_for_another_root_is_refused(client: Client) -> None:
    names = layered(client)
    token = downstream(client, names["intake"], page_size=1).next_page_token
    error = rpc_error(
        client.stub.GetDownstream, pb.GetDownstreamRequest(name=names["s2"], page_token=token), client.operator
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


# ---- plans and policies -------------------------------------------------------------------------------------------


def test_plan_makes_only_creative_dependent_execution_jobs_wait_for_creatives(client: Client) -> None:
    plan = client.stub.BuildPlan(
        pb.BuildPlanRequest(
            policy="marketing", selected_jobs=["campaign_strategy", "carousel_templates", "ig_posts", "email_sequence"]
        ),
        metadata=client.operator,
    )
    deps = {j.id: list(j.depends_on) for j in plan.jobs}
    assert deps == {
        "strategy:campaign_strategy": [],
        "creative:carousel_templates": ["strategy:campaign_strategy"],
        "execution:email_sequence": ["strategy:campaign_strategy"],
        "execution:ig_posts": ["strategy:campaign_strategy", "creative:carousel_templates"],
    }
    requirements = {r.artifact_type: list(r.required_upstream_types) for r in plan.requirements}
    assert requirements["execution"] == ["strategy", "creatives"]
    assert requirements["strategy"] == ["intake"]


def test_plan_without_creative_dependent_jobs_does_not_require_creatives(client: Client) -> None:
    plan = client.stub.BuildPlan(
        pb.BuildPlanRequest(policy="marketing", selected_jobs=["content_calendar", "hashtag_sets"]),
        metadata=client.operator,
    )
    requirements = {r.artifact_type: list(r.required_upstream_types) for r in plan.requirements}
    assert requirements["execution"] == ["strategy"]
    assert all(list(j.depends_on) == [] for j in plan.jobs)


def test_plan_warns_when_a_required_artifact_has_no_selected_job(client: Client) -> None:
    plan = client.stub.BuildPlan(
        pb.BuildPlanRequest(policy="marketing", selected_jobs=["campaign_strategy", "reels_scripts"]),
        metadata=client.operator,
    )
    assert any("creatives" in w for w in plan.warnings)


def test_plan_lists_every_unknown_job_type(client: Client) -> None:
    error = rpc_error(
        client.stub.BuildPlan,
        pb.BuildPlanRequest(policy="marketing", selected_jobs=["ig_posts", "confnote", "tiktok"]),
        client.operator,
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JOB_TYPE_UNKNOWN")
    assert [v.field for v in error.violations] == ["selected_jobs[1]", "selected_jobs[2]"]


def test_a_policy_without_job_groups_cannot_plan(client: Client) -> None:
    error = rpc_error(
        client.stub.BuildPlan, pb.BuildPlanRequest(policy="design_to_manufacture", selected_jobs=["x"]), client.operator
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "POLICY_HAS_NO_JOBS")


def test_get_policy_returns_the_shipped_types_rules_and_jobs(client: Client) -> None:
    policy = client.stub.GetPolicy(pb.GetPolicyRequest(name="marketing"), metadata=client.art_studio)
    types = {t.name: t for t in policy.types}
    assert list(types) == ["intake", "strategy", "creatives", "execution"]
    assert list(types["execution"].conditional[0].requires) == ["creatives"]
    assert types["execution"].selection_field == "/selected_jobs"
    assert types["intake"].source == "file:marketing.yaml"
    assert types["intake"].registered_by.id == "system:custody"
    assert [g.name for g in policy.job_groups] == ["strategy", "creative", "execution"]


def test_design_to_manufacture_chain_is_enforced(client: Client) -> None:
    d = "projects/fab/artifacts"
    digests = {"svg_sha256": "a" * 64, "spec_sha256": "b" * 64}
    brief = create(client, f"{d}/design_brief/rosette", {"prompt": "a rosette"}).version.name
    svg = create(client, f"{d}/svg_candidate/rosette-a", digests, [brief], metadata=client.art_studio).version.name
    verdict = {"verdict": "ALLOW", "run": "runs/run_1", "candidate": svg, **digests}
    run = create(client, f"{d}/feasibility_run/rosette-a", verdict, metadata=client.runs).version.name
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=run, rationale="r"), client.reviewer)
    assert error.reason == "LINEAGE_INCOMPLETE" and "svg_candidate" in error.message
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=svg, rationale="r"), client.reviewer)
    assert error.reason == "UPSTREAM_NOT_APPROVED"


# ---- runtime type registration ------------------------------------------------------------------------------------


def register(client: Client, name: str = "storyboard", **fields: Any) -> pb.ArtifactType:
    schema = fields.pop("schema", {"type": "object", "required": ["frames"]})
    request = pb.RegisterTypeRequest(
        name=name, policy=fields.pop("policy", "film"), schema_version=fields.pop("schema_version", "1"), **fields
    )
    request.schema.update(schema)
    return client.stub.RegisterType(request, metadata=fields.pop("metadata", client.operator), timeout=10)


def test_a_type_registered_at_runtime_validates_data_and_gates_approval(client: Client) -> None:
    registered = register(client, requires=["intake"])
    assert (registered.source, registered.registered_by.id) == ("runtime", "human:operator")
    request = pb.CreateVersionRequest(parent=f"{P}/storyboard/s1", metadata=meta())
    request.data.update({"no_frames": True})
    assert rpc_error(client.stub.CreateVersion, request, client.operator).reason == "DATA_SCHEMA_VIOLATION"
    board = create(client, f"{P}/storyboard/s1", {"frames": []}).version.name
    assert (
        rpc_error(client.stub.Approve, pb.ApproveRequest(name=board, rationale="r"), client.reviewer).reason
        == "LINEAGE_INCOMPLETE"
    )


def test_registering_the_identical_definition_again_returns_it(client: Client) -> None:
    first = register(client)
    again = register(client)
    assert again.definition_sha256 == first.definition_sha256 and again.register_time == first.register_time


def test_a_changed_definition_under_an_existing_schema_version_is_refused(client: Client) -> None:
    register(client)
    request = pb.RegisterTypeRequest(name="storyboard", policy="film", schema_version="1")
    request.schema.update({"type": "object"})
    error = rpc_error(client.stub.RegisterType, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "TYPE_VERSION_EXISTS")


def test_a_new_schema_version_becomes_the_default_for_new_versions(client: Client) -> None:
    register(client)
    register(client, schema_version="2", schema={"type": "object", "required": ["frames", "fps"]})
    version = create(client, f"{P}/storyboard/s1", {"frames": [], "fps": 24}).version
    assert version.metadata.schema_version == "2"
    old = create(client, f"{P}/storyboard/s2", {"frames": []}, meta=meta(schema_version="1")).version
    assert old.metadata.schema_version == "1"


def test_a_rule_naming_an_unregistered_type_is_failed_precondition(client: Client) -> None:
    error = rpc_error(
        client.stub.RegisterType,
        _register_request(requires=["nosuch"]),
        client.operator,
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUIRED_TYPE_NOT_REGISTERED")


def test_an_invalid_json_schema_is_refused(client: Client) -> None:
    error = rpc_error(client.stub.RegisterType, _register_request(schema={"type": "objekt"}), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SCHEMA_INVALID")


def test_a_type_cannot_move_to_another_policy(client: Client) -> None:
    error = rpc_error(
        client.stub.RegisterType, _register_request(name="intake", policy="film", schema_version="2"), client.operator
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TYPE_IN_OTHER_POLICY")


def test_a_condition_naming_an_unknown_job_of_a_file_policy_is_refused(client: Client) -> None:
    request = _register_request(name="execution", policy="marketing", schema_version="2", selection_field="/jobs")
    request.conditional.add(requires=["creatives"], when_any_selected=["confnote"])
    error = rpc_error(client.stub.RegisterType, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RULE_INVALID")


def test_only_operators_register_types(client: Client) -> None:
    for caller in (client.runs, client.reviewer, client.system):
        error = rpc_error(client.stub.RegisterType, _register_request(), caller)
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")


def _register_request(**fields: Any) -> pb.RegisterTypeRequest:
    schema = fields.pop("schema", {"type": "object"})
    request = pb.RegisterTypeRequest(
        name=fields.pop("name", "storyboard"),
        policy=fields.pop("policy", "film"),
        schema_version=fields.pop("schema_version", "1"),
        **fields,
    )
    request.schema.update(schema)
    return request


# ---- bad input, for every RPC -------------------------------------------------------------------------------------

BAD_NAME = "projects/acme/artifacts/intake/../versions/1"
BAD_INPUT: dict[str, tuple[str, Any, str]] = {
    "RegisterType": ("RegisterType", _register_request(name="Bad-Name"), "TYPE_NAME_INVALID"),
    "GetPolicy": ("GetPolicy", pb.GetPolicyRequest(name="../etc"), "POLICY_NAME_INVALID"),
    "CreateVersion": (
        "CreateVersion",
        pb.CreateVersionRequest(parent="projects/acme/../x", metadata=meta()),
        "NAME_INVALID",
    ),
    "CreateVersion-upstream": (
        "CreateVersion",
        pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta(), upstream=["/etc/passwd"]),
        "NAME_INVALID",
    ),
    "CreateVersion-request-id": (
        "CreateVersion",
        pb.CreateVersionRequest(
            parent=f"{P}/intake/brief",
            metadata=meta(),
            request_id="has space",
            data=struct_pb2.Struct(
                fields={
                    "client": struct_pb2.Value(string_value="c"),
                    "objectives": struct_pb2.Value(
                        list_value=struct_pb2.ListValue(values=[struct_pb2.Value(string_value="o")])
                    ),
                }
            ),
        ),
        "REQUEST_ID_INVALID",
    ),
    "GetVersion": ("GetVersion", pb.GetVersionRequest(name=BAD_NAME), "NAME_INVALID"),
    "GetVersion-zero": ("GetVersion", pb.GetVersionRequest(name=f"{P}/intake/brief/versions/0"), "NAME_INVALID"),
    "ListVersions": ("ListVersions", pb.ListVersionsRequest(parent="acme"), "NAME_INVALID"),
    "ListVersions-size": (
        "ListVersions",
        pb.ListVersionsRequest(parent="projects/acme", page_size=-1),
        "PAGE_SIZE_INVALID",
    ),
    "DiffVersions": ("DiffVersions", pb.DiffVersionsRequest(base=BAD_NAME, target=BAD_NAME), "NAME_INVALID"),
    "Approve": ("Approve", pb.ApproveRequest(name=BAD_NAME, rationale="r"), "NAME_INVALID"),
    "Flag": ("Flag", pb.FlagRequest(name=BAD_NAME, rationale="r"), "NAME_INVALID"),
    "Reject": ("Reject", pb.RejectRequest(name=BAD_NAME, rationale="r"), "NAME_INVALID"),
    "AssessHealth": (
        "AssessHealth",
        pb.AssessHealthRequest(name=BAD_NAME, health=pb.HEALTH_CONFIRMED_VALID, rationale="r"),
        "NAME_INVALID",
    ),
    "ListStale": ("ListStale", pb.ListStaleRequest(parent="projects/ACME"), "NAME_INVALID"),
    "GetUpstream": ("GetUpstream", pb.GetUpstreamRequest(name=BAD_NAME), "NAME_INVALID"),
    "GetDownstream": (
        "GetDownstream",
        pb.GetDownstreamRequest(name=f"{P}/intake/brief/versions/1", max_depth=-1),
        "MAX_DEPTH_INVALID",
    ),
    "BuildPlan": ("BuildPlan", pb.BuildPlanRequest(policy="marketing"), "JOBS_REQUIRED"),
}


def count_rows(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                table: int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
                for table in (
                    "lineage_types",
                    "lineage_versions",
                    "lineage_status_history",
                    "lineage_health_history",
                    "lineage_idempotency",
                )
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_invalid_argument_and_writes_nothing(client: Client, database_url: str, case: str) -> None:
    method, request, reason = BAD_INPUT[case]
    before = count_rows(database_url)
    error = rpc_error(
        getattr(client.stub, method),
        request,
        client.reviewer if method in ("Approve", "Reject", "AssessHealth") else client.operator,
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert error.domain == "lineage.custody"
    assert error.violations, "every INVALID_ARGUMENT names the bad field"
    assert count_rows(database_url) == before


@pytest.mark.parametrize(
    ("method", "request_message"),
    [
        ("GetVersion", pb.GetVersionRequest(name=f"{P}/intake/none/versions/1")),
        (
            "DiffVersions",
            pb.DiffVersionsRequest(base=f"{P}/intake/none/versions/1", target=f"{P}/intake/none/versions/2"),
        ),
        ("Flag", pb.FlagRequest(name=f"{P}/intake/none/versions/1", rationale="r")),
        ("GetUpstream", pb.GetUpstreamRequest(name=f"{P}/intake/none/versions/1")),
        ("GetDownstream", pb.GetDownstreamRequest(name=f"{P}/intake/none/versions/1")),
    ],
)
def test_a_well_formed_name_of_a_missing_version_is_not_found(
    client: Client, method: str, request_message: Any
) -> None:
    error = rpc_error(getattr(client.stub, method), request_message, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND")


def test_an_unknown_policy_is_not_found(client: Client) -> None:
    error = rpc_error(client.stub.GetPolicy, pb.GetPolicyRequest(name="nosuch"), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "POLICY_NOT_FOUND")


def test_a_service_outside_the_call_graph_is_refused(client: Client) -> None:
    error = rpc_error(client.stub.GetPolicy, pb.GetPolicyRequest(name="marketing"), client.ai_gateway)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")
