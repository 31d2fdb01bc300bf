"""The review queue over real gRPC on SQLite and PostgreSQL: ListVersions filtered by current status, of one project
or of every project (projects/-), oldest first in keyset pages whose tokens are bound to the statuses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc
import pytest
import sqlalchemy as sa

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout
from services.common import migrations
from services.common.db import create_engine
from services.common.pagination import PageTokens
from services.lineage.domain.model import Status
from services.lineage.domain.names import ListScope
from services.lineage.domain.service import LIST_VERSIONS
from services.lineage.store.reads import VersionReads
from services.lineage.store.transactions import Transactions
from tests.lineage.conftest import Client, create, rpc_error, start_client
from tests.support import page_tokens

P = "projects/acme/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}
AWAITING = [pb.STATUS_DRAFT, pb.STATUS_FLAGGED_FOR_REVIEW]
KEY = page_tokens.new_key()


def brief(client: Client, project: str, entity: str) -> str:
    return create(client, f"projects/{project}/artifacts/intake/{entity}", INTAKE).version.name


def decide(client: Client, method: str, name: str) -> None:
    request = {"Approve": pb.ApproveRequest, "Reject": pb.RejectRequest, "Flag": pb.FlagRequest}[method]
    getattr(client.stub, method)(request(name=name, rationale="decided"), metadata=client.reviewer, timeout=10)


def listed(
    client: Client, parent: str, statuses: Sequence[int] = (), page_size: int = 0, token: str = ""
) -> pb.ListVersionsResponse:
    request = pb.ListVersionsRequest(parent=parent, statuses=statuses, page_size=page_size, page_token=token)
    response: pb.ListVersionsResponse = client.stub.ListVersions(request, metadata=client.reviewer, timeout=10)
    return response


def every_page(client: Client, parent: str, statuses: Sequence[int] = (), page_size: int = 2) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = listed(client, parent, statuses, page_size, token)
        seen += [v.name for v in page.versions]
        token = page.next_page_token
        if not token:
            return seen


def mixed(client: Client) -> dict[str, str]:
    """Seven versions in three projects, created in this order: drafts, a flagged one, an approved one and a
    rejected one, interleaved so that a filtered page must skip decided versions between queued ones."""
    names = {
        "acme draft": brief(client, "acme", "a1"),
        "acme approved": brief(client, "acme", "a2"),
        "beta draft": brief(client, "beta", "b1"),
        "acme flagged": brief(client, "acme", "a3"),
        "beta rejected": brief(client, "beta", "b2"),
        "gamma draft": brief(client, "gamma", "c1"),
        "gamma approved": brief(client, "gamma", "c2"),
    }
    decide(client, "Approve", names["acme approved"])
    decide(client, "Flag", names["acme flagged"])
    decide(client, "Reject", names["beta rejected"])
    decide(client, "Approve", names["gamma approved"])
    return names


def test_the_queue_of_every_project_lists_drafts_and_flagged_versions_oldest_first(client: Client) -> None:
    names = mixed(client)
    page = listed(client, "projects/-", AWAITING)
    assert [v.name for v in page.versions] == [
        names["acme draft"],
        names["beta draft"],
        names["acme flagged"],
        names["gamma draft"],
    ]
    assert [v.status.status for v in page.versions] == [pb.STATUS_DRAFT] * 2 + [pb.STATUS_FLAGGED_FOR_REVIEW] + [
        pb.STATUS_DRAFT
    ]
    assert page.next_page_token == ""


def test_the_queue_pages_through_every_project_without_repeating_or_skipping(client: Client) -> None:
    names = mixed(client)
    queued = [names[k] for k in ("acme draft", "beta draft", "acme flagged", "gamma draft")]
    for size in (1, 2, 3):
        assert every_page(client, "projects/-", AWAITING, size) == queued


def test_every_project_without_a_filter_lists_every_version(client: Client) -> None:
    names = mixed(client)
    assert every_page(client, "projects/-") == list(names.values())


@pytest.mark.parametrize(
    ("parent", "statuses", "expected"),
    [
        ("projects/acme", [pb.STATUS_DRAFT, pb.STATUS_FLAGGED_FOR_REVIEW], ["acme draft", "acme flagged"]),
        ("projects/acme", [pb.STATUS_APPROVED], ["acme approved"]),
        ("projects/beta/artifacts/intake", [pb.STATUS_REJECTED], ["beta rejected"]),
        ("projects/-", [pb.STATUS_APPROVED], ["acme approved", "gamma approved"]),
        ("projects/-", [pb.STATUS_REJECTED, pb.STATUS_APPROVED], ["acme approved", "beta rejected", "gamma approved"]),
        ("projects/gamma/artifacts/intake/c2", [pb.STATUS_APPROVED], ["gamma approved"]),
        ("projects/gamma/artifacts/intake/c2", [pb.STATUS_DRAFT], []),
    ],
)
def test_the_status_filter_narrows_a_project_a_type_an_entity_or_every_project(
    client: Client, parent: str, statuses: list[int], expected: list[str]
) -> None:
    names = mixed(client)
    assert every_page(client, parent, statuses) == [names[k] for k in expected]


def test_a_version_decided_while_a_client_pages_leaves_the_later_pages(client: Client) -> None:
    first, second, third = (brief(client, "acme", f"e{i}") for i in range(3))
    page = listed(client, "projects/-", AWAITING, page_size=1)
    assert [v.name for v in page.versions] == [first]
    decide(client, "Approve", second)
    fourth = brief(client, "beta", "late")
    rest, token = [], page.next_page_token
    while token:
        page = listed(client, "projects/-", AWAITING, 1, token)
        rest += [v.name for v in page.versions]
        token = page.next_page_token
    assert rest == [third, fourth]


def test_a_token_is_bound_to_the_set_of_statuses_not_to_their_order_or_repetition(client: Client) -> None:
    for i in range(3):
        brief(client, "acme", f"e{i}")
    token = listed(client, "projects/-", AWAITING, page_size=1).next_page_token
    same_set = [pb.STATUS_FLAGGED_FOR_REVIEW, pb.STATUS_DRAFT, pb.STATUS_DRAFT]
    assert len(listed(client, "projects/-", same_set, page_size=1, token=token).versions) == 1


@pytest.mark.parametrize(
    ("issued_with", "replayed_with"),
    [
        ([pb.STATUS_DRAFT, pb.STATUS_FLAGGED_FOR_REVIEW], [pb.STATUS_DRAFT]),
        ([pb.STATUS_DRAFT, pb.STATUS_FLAGGED_FOR_REVIEW], []),
        ([], [pb.STATUS_DRAFT]),
        ([pb.STATUS_DRAFT], [pb.STATUS_APPROVED]),
    ],
)
def test_a_token_replayed_with_other_statuses_is_page_token_invalid(
    client: Client, issued_with: list[int], replayed_with: list[int]
) -> None:
    for i in range(3):
        brief(client, "acme", f"e{i}")
    token = listed(client, "projects/acme", issued_with, page_size=1).next_page_token
    assert token
    page_tokens.assert_page_token_invalid(lambda: listed(client, "projects/acme", replayed_with, 1, token))


def test_a_token_of_one_project_replayed_for_every_project_is_page_token_invalid(client: Client) -> None:
    for i in range(3):
        brief(client, "acme", f"e{i}")
    for issued, replayed in (("projects/acme", "projects/-"), ("projects/-", "projects/acme")):
        token = listed(client, issued, AWAITING, page_size=1).next_page_token
        page_tokens.assert_page_token_invalid(lambda: listed(client, replayed, AWAITING, 1, token))  # noqa: B023


@pytest.fixture
def keyed(layout: StateLayout, database_url: str) -> Iterator[Client]:
    yield from start_client(layout, database_url, page_token_key=KEY)


def test_a_token_issued_before_the_status_filter_existed_still_pages(keyed: Client) -> None:
    """Tokens without a status filter are bound to the filters they always were: an upgrade breaks no client."""
    names = [brief(keyed, "acme", f"e{i}") for i in range(3)]
    first = listed(keyed, "projects/acme", page_size=1)
    after = page_tokens.cursor_of(first.next_page_token)
    old = PageTokens(KEY.encode()).encode(LIST_VERSIONS, after, {"list": "versions", "parent": "projects/acme"})
    assert old == first.next_page_token
    assert [v.name for v in listed(keyed, "projects/acme", page_size=5, token=old).versions] == names[1:]


@pytest.mark.parametrize(
    ("statuses", "fields"),
    [
        ([pb.STATUS_UNSPECIFIED], ["statuses[0]"]),
        ([pb.STATUS_DRAFT, 99], ["statuses[1]"]),
        ([-1, pb.STATUS_APPROVED, 0], ["statuses[0]", "statuses[2]"]),
    ],
)
def test_an_unspecified_or_unknown_status_is_filter_invalid_naming_each_entry(
    client: Client, statuses: list[int], fields: list[str]
) -> None:
    request = pb.ListVersionsRequest(parent="projects/-", statuses=statuses)
    error = rpc_error(client.stub.ListVersions, request, client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FILTER_INVALID")
    assert [v.field for v in error.violations] == fields
    assert all("STATUS_DRAFT" in v.description for v in error.violations)


@pytest.mark.parametrize(
    "parent",
    [
        "projects/-/artifacts/intake",
        "projects/-/artifacts/intake/brief",
        "projects/-/",
        "projects/--",
        "projects/*",
        "projects/",
        "-",
    ],
)
def test_the_wildcard_stands_for_every_project_only_as_the_whole_parent(client: Client, parent: str) -> None:
    error = rpc_error(client.stub.ListVersions, pb.ListVersionsRequest(parent=parent), client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")
    assert [v.field for v in error.violations] == ["parent"]


@pytest.mark.parametrize("caller", ["human_without_review", "ai_gateway"])
def test_the_queue_of_every_project_is_refused_to_callers_that_may_not_list(client: Client, caller: str) -> None:
    request = pb.ListVersionsRequest(parent="projects/-", statuses=AWAITING)
    error = rpc_error(client.stub.ListVersions, request, getattr(client, caller))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")


def test_the_queue_of_every_project_is_read_from_the_status_index(sqlite_url: str) -> None:
    """SQLite's plan (PostgreSQL picks by its statistics): the queue is found from its own index entries, from the
    cursor on, never by scanning every version or every status."""
    engine = create_engine(sqlite_url)
    migrations.upgrade(engine, "lineage")
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    try:
        sa.event.listen(engine, "before_cursor_execute", capture)
        VersionReads(Transactions(engine)).list_versions(
            ListScope(None), 7, 10, frozenset({Status.DRAFT, Status.FLAGGED_FOR_REVIEW})
        )
        sa.event.remove(engine, "before_cursor_execute", capture)
        ((statement, parameters),) = statements
        with engine.connect() as connection:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]  # type: ignore[arg-type]
    finally:
        engine.dispose()
    assert "SEARCH lineage_status USING INDEX ix_lineage_status_status_version (status=? AND version_id>?)" in plan
    assert not [step for step in plan if step.startswith(("SCAN lineage_status", "SCAN lineage_versions"))], plan
