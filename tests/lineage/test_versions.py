"""Versions over real gRPC on SQLite and PostgreSQL: creation, numbering, immutability, idempotency, schemas."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from services.common.db import create_engine
from services.common.hashing import sha256_canonical
from tests.lineage.conftest import Client, create, meta, rpc_error

P = "projects/acme/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}


def count_versions(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT count(*) FROM lineage_versions").scalar_one())
    finally:
        engine.dispose()


def test_create_returns_an_immutable_snapshot_with_hashes_and_creator(client: Client) -> None:
    response = create(client, f"{P}/intake/brief", INTAKE)
    version = response.version
    assert version.name == f"{P}/intake/brief/versions/1"
    assert (version.project, version.artifact_type, version.entity, version.version) == ("acme", "intake", "brief", 1)
    assert version.data_sha256 == sha256_canonical(INTAKE)
    assert len(version.snapshot_sha256) == 64
    assert version.created_by.id == "human:operator"
    assert version.created_by.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    assert version.status.status == pb.STATUS_DRAFT
    assert version.health.health == pb.HEALTH_VALID
    assert version.metadata.schema_version == "2"
    assert version.latest
    assert not response.replayed


def test_versions_of_an_entity_are_numbered_in_order(client: Client) -> None:
    names = [create(client, f"{P}/intake/brief", {**INTAKE, "audience": str(i)}).version.name for i in range(3)]
    assert names == [f"{P}/intake/brief/versions/{n}" for n in (1, 2, 3)]


def test_sixteen_concurrent_creates_get_versions_one_to_sixteen(client: Client, database_url: str) -> None:
    def one(i: int) -> int:
        return create(client, f"{P}/intake/brief", {**INTAKE, "audience": f"a{i}"}).version.version

    with ThreadPoolExecutor(max_workers=16) as pool:
        numbers = list(pool.map(one, range(16)))
    assert sorted(numbers) == list(range(1, 17))
    assert count_versions(database_url) == 16


def test_get_version_returns_data_metadata_and_histories(client: Client) -> None:
    cost = common_pb2.CostRecord(estimate_usd=0.01, provider="p", model="m", price_table_version="t1")
    created = create(
        client, f"{P}/intake/brief", INTAKE, meta=meta(alternatives_considered=["a", "b"], cost=cost)
    ).version
    got = client.stub.GetVersion(pb.GetVersionRequest(name=created.name), metadata=client.reviewer, timeout=10)
    assert dict(got.data) == {"client": "acme", "objectives": ["grow"]}
    assert list(got.metadata.alternatives_considered) == ["a", "b"]
    assert got.metadata.cost.estimate_usd == pytest.approx(0.01)
    assert [h.health for h in got.health_history] == [pb.HEALTH_VALID]
    assert [s.status for s in got.status_history] == [pb.STATUS_DRAFT]
    assert got.snapshot_sha256 == created.snapshot_sha256


def test_integral_numbers_keep_their_hash_through_protobuf(client: Client) -> None:
    data = {"client": "acme", "objectives": ["grow"], "budget_usd": 1500}
    version = create(client, f"{P}/intake/brief", data).version
    assert version.data_sha256 == sha256_canonical(data)


def test_snapshot_rows_refuse_update_and_delete_in_the_database(client: Client, database_url: str) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    engine = create_engine(database_url)
    try:
        for statement in ("UPDATE lineage_versions SET data_json = '{}'", "DELETE FROM lineage_versions"):
            with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
                connection.exec_driver_sql(statement)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT data_json FROM lineage_versions")).scalar_one() != "{}"
    finally:
        engine.dispose()


def test_same_request_id_and_request_returns_the_original_version(client: Client, database_url: str) -> None:
    first = create(client, f"{P}/intake/brief", INTAKE, request_id="create-1")
    again = create(client, f"{P}/intake/brief", INTAKE, request_id="create-1")
    assert again.replayed and not first.replayed
    assert again.version.name == first.version.name
    assert count_versions(database_url) == 1


def test_same_request_id_with_a_different_request_is_already_exists(client: Client, database_url: str) -> None:
    create(client, f"{P}/intake/brief", INTAKE, request_id="create-1")
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta(), request_id="create-1")
    request.data.update({**INTAKE, "audience": "other"})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert count_versions(database_url) == 1


def test_request_ids_are_scoped_to_the_caller(client: Client) -> None:
    shared = pb.RegisterTypeRequest(
        name="note", policy="scratch", schema_version="1", creators=["human", "service:runs"]
    )
    shared.schema.update({"type": "object"})
    client.stub.RegisterType(shared, metadata=client.operator, timeout=30)
    create(client, f"{P}/note/n", {"text": "x"}, request_id="shared-key")
    other = create(client, f"{P}/note/n", {"text": "x"}, request_id="shared-key", metadata=client.runs)
    assert not other.replayed and other.version.version == 2


def test_data_violating_the_schema_lists_every_violation_and_writes_nothing(client: Client, database_url: str) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta())
    request.data.update({"objectives": [], "budget_usd": -1})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DATA_SCHEMA_VIOLATION")
    fields = sorted(v.field for v in error.violations)
    assert fields == ["data", "data/budget_usd", "data/objectives"]
    assert count_versions(database_url) == 0


def test_unregistered_type_is_failed_precondition(client: Client, database_url: str) -> None:
    error = rpc_error(
        client.stub.CreateVersion, pb.CreateVersionRequest(parent=f"{P}/nosuch/x", metadata=meta()), client.operator
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TYPE_NOT_REGISTERED")
    assert count_versions(database_url) == 0


def test_unknown_schema_version_is_failed_precondition(client: Client) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta(schema_version="9"))
    request.data.update(INTAKE)
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SCHEMA_VERSION_NOT_REGISTERED")


def test_missing_upstream_versions_are_each_listed_and_nothing_is_written(client: Client, database_url: str) -> None:
    request = pb.CreateVersionRequest(
        parent=f"{P}/strategy/main",
        metadata=meta(),
        upstream=[f"{P}/intake/brief/versions/1", f"{P}/intake/other/versions/7"],
    )
    request.data.update({"summary": "s"})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_NOT_FOUND")
    assert [v.field for v in error.violations] == ["upstream[0]", "upstream[1]"]
    assert count_versions(database_url) == 0


@pytest.mark.parametrize(
    ("upstream", "field"),
    [
        (
            ["projects/acme/artifacts/intake/brief/versions/1", "projects/acme/artifacts/intake/brief/versions/1"],
            "upstream[1]",
        ),
        (["projects/acme/artifacts/strategy/main/versions/1"], "upstream[0]"),
        (["projects/other/artifacts/intake/brief/versions/1"], "upstream[0]"),
    ],
    ids=["repeated", "same-entity", "other-project"],
)
def test_invalid_upstream_references_are_invalid_argument(client: Client, upstream: list[str], field: str) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    request = pb.CreateVersionRequest(parent=f"{P}/strategy/main", metadata=meta(), upstream=upstream)
    request.data.update({"summary": "s"})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_INVALID")
    assert field in [v.field for v in error.violations]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (pb.VersionMetadata(rationale="r", confidence=0.5, source=pb.SOURCE_AI), "metadata.intent"),
        (pb.VersionMetadata(intent="i", confidence=0.5, source=pb.SOURCE_AI), "metadata.rationale"),
        (pb.VersionMetadata(intent="i", rationale="r", source=pb.SOURCE_AI), "metadata.confidence"),
        (pb.VersionMetadata(intent="i", rationale="r", confidence=1.5, source=pb.SOURCE_AI), "metadata.confidence"),
        (pb.VersionMetadata(intent="i", rationale="r", confidence=0.5), "metadata.source"),
    ],
    ids=["intent", "rationale", "confidence-missing", "confidence-range", "source"],
)
def test_incomplete_metadata_is_invalid_argument(client: Client, metadata: pb.VersionMetadata, field: str) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=metadata)
    request.data.update(INTAKE)
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "METADATA_INVALID")
    assert field in [v.field for v in error.violations]


def test_list_versions_pages_through_an_entity_oldest_first(client: Client) -> None:
    for i in range(5):
        create(client, f"{P}/intake/brief", {**INTAKE, "audience": str(i)})
    create(client, f"{P}/intake/other", INTAKE)
    seen, token = [], ""
    while True:
        page = client.stub.ListVersions(
            pb.ListVersionsRequest(parent=f"{P}/intake/brief", page_size=2, page_token=token),
            metadata=client.operator,
            timeout=10,
        )
        seen += [v.version for v in page.versions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [1, 2, 3, 4, 5]


def test_list_versions_by_project_includes_every_entity(client: Client) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    create(client, f"{P}/intake/other", INTAKE)
    page = client.stub.ListVersions(pb.ListVersionsRequest(parent="projects/acme"), metadata=client.operator)
    assert [v.entity for v in page.versions] == ["brief", "other"]
    assert [v.latest for v in page.versions] == [True, True]


def test_a_page_token_from_another_parent_is_refused(client: Client) -> None:
    for _ in range(3):
        create(client, f"{P}/intake/brief", INTAKE)
    page = client.stub.ListVersions(
        pb.ListVersionsRequest(parent=f"{P}/intake/brief", page_size=1), metadata=client.operator
    )
    error = rpc_error(
        client.stub.ListVersions,
        pb.ListVersionsRequest(parent="projects/acme", page_token=page.next_page_token),
        client.operator,
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


def test_diff_returns_a_json_patch_and_changed_paths(client: Client) -> None:
    a = create(client, f"{P}/intake/brief", {**INTAKE, "audience": "teens"}).version
    b = create(
        client, f"{P}/intake/brief", {"client": "acme", "objectives": ["grow", "retain"], "budget_usd": 5}
    ).version
    diff = client.stub.DiffVersions(pb.DiffVersionsRequest(base=a.name, target=b.name), metadata=client.operator)
    assert list(diff.changed_paths) == ["/audience", "/budget_usd", "/objectives/1"]
    assert (diff.added, diff.removed, diff.replaced) == (2, 1, 0)
    import json

    import jsonpatch

    assert jsonpatch.apply_patch(dict(INTAKE, audience="teens"), json.loads(diff.patch_json)) == {
        "client": "acme",
        "objectives": ["grow", "retain"],
        "budget_usd": 5,
    }


def test_diff_of_equal_data_is_identical(client: Client) -> None:
    a = create(client, f"{P}/intake/brief", INTAKE).version
    b = create(client, f"{P}/intake/brief", INTAKE).version
    diff = client.stub.DiffVersions(pb.DiffVersionsRequest(base=a.name, target=b.name), metadata=client.operator)
    assert diff.identical and not diff.patch


def test_a_malformed_parameters_digest_is_invalid_metadata(client: Client) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta(parameters_sha256="not-a-digest"))
    request.data.update(INTAKE)
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "METADATA_INVALID")
    assert [v.field for v in error.violations] == ["metadata.parameters_sha256"]
