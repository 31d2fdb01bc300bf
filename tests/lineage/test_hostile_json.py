"""JSON in lineage requests (version data, type schemas) is held to the shared limits: finite numbers, bounded
nesting, refused with the field's path instead of reaching INTERNAL; numbers beyond 2**53 never reach it either."""

from __future__ import annotations

import grpc

from custody.lineage.v1 import lineage_pb2 as pb
from tests.lineage.conftest import Client, create, meta, rpc_error

P = "projects/acme/artifacts"


def test_nan_in_version_data_is_json_not_finite_naming_the_field(client: Client) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta())
    request.data.update({"client": "acme", "objectives": ["grow"]})
    request.data["budget"] = float("nan")
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_NOT_FINITE")
    assert [v.field for v in error.violations] == ["data.budget"]


def test_a_value_with_no_kind_set_in_version_data_is_json_value_unset(client: Client) -> None:
    """Found by fuzzing (bench/fuzz requests_lineage); it was INTERNAL."""
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta())
    request.data.update({"client": "acme", "objectives": ["grow"]})
    request.data.fields["budget"].Clear()
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_VALUE_UNSET")
    assert [v.field for v in error.violations] == ["data.budget"]


def test_version_data_nested_past_the_limit_is_json_too_deep(client: Client) -> None:
    request = pb.CreateVersionRequest(parent=f"{P}/intake/brief", metadata=meta())
    value: object = "x"
    for _ in range(40):
        value = [value]
    request.data.update({"client": "acme", "objectives": value})
    error = rpc_error(client.stub.CreateVersion, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_TOO_DEEP")
    assert error.violations[0].field.startswith("data.objectives[0][0]")


def test_infinity_in_a_registered_schema_is_json_not_finite(client: Client) -> None:
    request = pb.RegisterTypeRequest(name="storyboard", policy="film", schema_version="1")
    request.schema.update({"type": "object", "properties": {"frames": {"type": "number"}}})
    request.schema["properties"]["frames"]["maximum"] = float("inf")
    error = rpc_error(client.stub.RegisterType, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_NOT_FINITE")
    assert [v.field for v in error.violations] == ["schema.properties.frames.maximum"]


def test_a_schema_number_beyond_2_53_registers_and_reads_back_with_its_digest(client: Client) -> None:
    request = pb.RegisterTypeRequest(name="storyboard", policy="film", schema_version="1")
    request.schema.update({"type": "object", "properties": {"frames": {"type": "number", "maximum": 2.0**53}}})
    registered = client.stub.RegisterType(request, metadata=client.operator, timeout=10)
    policy = client.stub.GetPolicy(pb.GetPolicyRequest(name="film"), metadata=client.operator, timeout=10)
    assert policy.types[0].definition_sha256 == registered.definition_sha256


def test_an_expected_revision_beyond_what_json_carries_is_invalid(client: Client) -> None:
    name = create(client, f"{P}/intake/brief", {"client": "acme", "objectives": ["grow"]}).version.name
    request = pb.AssessHealthRequest(
        name=name, health=pb.HEALTH_CONFIRMED_VALID, rationale="holds", expected_revision=2**63 - 1
    )
    error = rpc_error(client.stub.AssessHealth, request, client.reviewer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EXPECTED_REVISION_INVALID")
