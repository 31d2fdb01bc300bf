"""ListProjects and ListPolicies over real gRPC and through `custody lineage projects|policies`; a listing of a
project that holds nothing is an empty page for a client (a pipeline lists its project before its first version)
and NOT_FOUND on the command line, never an empty table that reads as "nothing to review"."""

from __future__ import annotations

import json

import grpc

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout, save_endpoints
from tests.lineage.conftest import Client, create, rpc_error
from tests.support.processes import clean_environment, custody

INTAKE = {"client": "acme", "objectives": ["grow"]}


def brief(client: Client, project: str, entity: str) -> str:
    return create(client, f"projects/{project}/artifacts/intake/{entity}", INTAKE).version.name


def projects(client: Client, page_size: int = 0, token: str = "") -> pb.ListProjectsResponse:
    request = pb.ListProjectsRequest(page_size=page_size, page_token=token)
    response: pb.ListProjectsResponse = client.stub.ListProjects(request, metadata=client.reviewer, timeout=10)
    return response


def test_projects_are_listed_by_name_with_their_version_counts(client: Client) -> None:
    brief(client, "zeta", "a")
    brief(client, "acme", "a")
    brief(client, "acme", "b")
    listed = projects(client).projects
    assert [(p.name, p.version_count) for p in listed] == [("projects/acme", 2), ("projects/zeta", 1)]
    assert all(p.latest_create_time.seconds > 0 for p in listed)


def test_projects_come_in_keyset_pages_each_once(client: Client) -> None:
    for name in ("p1", "p2", "p3"):
        brief(client, name, "a")
    first = projects(client, page_size=2)
    second = projects(client, page_size=2, token=first.next_page_token)
    assert [p.name for p in [*first.projects, *second.projects]] == ["projects/p1", "projects/p2", "projects/p3"]
    assert second.next_page_token == ""


def test_a_forged_project_page_token_is_refused(client: Client) -> None:
    error = rpc_error(client.stub.ListProjects, pb.ListProjectsRequest(page_token="forged"), client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


def lineage_cli(client: Client, layout: StateLayout, *args: str) -> tuple[int, str, str]:
    save_endpoints(layout, {"lineage": client.harness.address})
    result = custody("lineage", *args, "--state-dir", str(layout.root), env=clean_environment())
    return result.returncode, result.stdout, result.stderr


def test_the_cli_lists_projects(client: Client, layout: StateLayout) -> None:
    brief(client, "acme", "a")
    code, out, _ = lineage_cli(client, layout, "projects", "--json")
    assert code == 0 and [(p["name"], p["version_count"]) for p in json.loads(out)] == [("projects/acme", "1")]


def test_the_cli_lists_policies(client: Client, layout: StateLayout) -> None:
    code, out, _ = lineage_cli(client, layout, "policies")
    assert code == 0 and "design_to_manufacture" in out


def test_the_cli_listing_a_project_that_holds_nothing_is_not_found(client: Client, layout: StateLayout) -> None:
    brief(client, "acme", "a")
    for args in (("versions", "projects/acmee"), ("queue", "acmee"), ("stale", "acmee")):
        code, out, err = lineage_cli(client, layout, *args)
        assert code == 1 and out == "", args
        assert "NOT_FOUND PROJECT_NOT_FOUND" in err and "custody lineage projects" in err


def test_the_cli_listing_an_existing_project_without_matches_is_an_empty_table(
    client: Client, layout: StateLayout
) -> None:
    brief(client, "acme", "a")
    code, out, _ = lineage_cli(client, layout, "stale", "acme", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_a_client_listing_a_project_that_holds_nothing_gets_an_empty_page(client: Client) -> None:
    request = pb.ListVersionsRequest(parent="projects/not-yet")
    assert list(client.stub.ListVersions(request, metadata=client.reviewer, timeout=10).versions) == []


def test_policies_are_listed_with_their_types(client: Client) -> None:
    listed = client.stub.ListPolicies(pb.ListPoliciesRequest(), metadata=client.reviewer, timeout=10).policies
    names = [p.name for p in listed]
    assert names == sorted(names) and "design_to_manufacture" in names
    by_name = {p.name: p for p in listed}
    one = client.stub.GetPolicy(pb.GetPolicyRequest(name=names[0]), metadata=client.reviewer, timeout=10)
    assert by_name[names[0]] == one
