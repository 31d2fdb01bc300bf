"""Authority is per type: a type's creator rule says which principals may create its versions, and nobody else
can, whatever token they hold. The shipped policies give every type a rule."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from custody.lineage.v1 import lineage_pb2 as pb
from services.common.identity import Principal, PrincipalKind
from services.lineage.config import SHIPPED_POLICIES
from services.lineage.domain.creators import admits
from services.lineage.domain.policy import load_policies
from tests.lineage.conftest import Client, create, rpc_error
from tests.lineage.test_versions import count_versions

D = "projects/fab/artifacts"
DIGESTS = {"svg_sha256": "a" * 64, "spec_sha256": "b" * 64}


def _brief(client: Client) -> str:
    return create(client, f"{D}/design_brief/rosette", {"prompt": "a rosette"}).version.name


@pytest.mark.parametrize(
    ("artifact", "data", "caller"),
    [
        ("feasibility_run", {"verdict": "ALLOW"}, "art_studio"),
        ("feasibility_run", {"verdict": "ALLOW"}, "operator"),
        ("svg_candidate", DIGESTS, "runs"),
        ("svg_candidate", DIGESTS, "operator"),
        ("design_brief", {"prompt": "x"}, "art_studio"),
        ("design_brief", {"prompt": "x"}, "runs"),
        ("intake", {"client": "c", "objectives": ["o"]}, "runs"),
    ],
)
def test_a_creator_outside_the_types_rule_is_refused_and_nothing_is_written(
    client: Client, database_url: str, artifact: str, data: dict[str, Any], caller: str
) -> None:
    request = pb.CreateVersionRequest(
        parent=f"{D}/{artifact}/x",
        metadata=pb.VersionMetadata(intent="i", rationale="r", confidence=1.0, source=pb.SOURCE_HUMAN),
    )
    request.data.update(data)
    error = rpc_error(client.stub.CreateVersion, request, getattr(client, caller))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CREATOR_NOT_ALLOWED")
    assert artifact in error.message
    assert count_versions(database_url) == 0


def test_each_type_is_created_by_the_principal_its_rule_names(client: Client) -> None:
    brief = _brief(client)
    svg = create(client, f"{D}/svg_candidate/rosette-a", DIGESTS, [brief], metadata=client.art_studio).version
    verdict = {"verdict": "BLOCK", "run": "runs/run_1", "candidate": svg.name, **DIGESTS}
    run = create(client, f"{D}/feasibility_run/rosette-a", verdict, [svg.name], metadata=client.runs).version
    assert (svg.created_by.id, run.created_by.id) == ("service:art_studio", "service:runs")


def test_the_policy_shows_each_types_creators(client: Client) -> None:
    policy = client.stub.GetPolicy(pb.GetPolicyRequest(name="design_to_manufacture"), metadata=client.operator)
    assert {t.name: list(t.creators) for t in policy.types} == {
        "design_brief": ["human"],
        "svg_candidate": ["service:art_studio"],
        "feasibility_run": ["service:runs"],
    }


def test_every_shipped_type_has_an_explicit_creator_rule() -> None:
    for policy in load_policies(SHIPPED_POLICIES).values():
        assert all(t.creators for t in policy.types), policy.name


def test_a_runtime_type_without_creators_admits_people_only(client: Client) -> None:
    request = pb.RegisterTypeRequest(name="memo", policy="scratch", schema_version="1")
    request.schema.update({"type": "object"})
    client.stub.RegisterType(request, metadata=client.operator, timeout=30)
    assert create(client, "projects/p/artifacts/memo/m", {}).version.created_by.id == "human:operator"
    error = rpc_error(
        client.stub.CreateVersion,
        pb.CreateVersionRequest(
            parent="projects/p/artifacts/memo/m",
            metadata=pb.VersionMetadata(intent="i", rationale="r", confidence=1.0, source=pb.SOURCE_AI),
        ),
        client.art_studio,
    )
    assert error.reason == "CREATOR_NOT_ALLOWED"


def test_a_new_schema_version_cannot_regrant_who_creates_the_type(client: Client) -> None:
    first = pb.RegisterTypeRequest(name="memo", policy="scratch", schema_version="1", creators=["human"])
    first.schema.update({"type": "object"})
    client.stub.RegisterType(first, metadata=client.operator, timeout=30)
    widened = pb.RegisterTypeRequest(
        name="memo", policy="scratch", schema_version="2", creators=["human", "service:runs"]
    )
    widened.schema.update({"type": "object"})
    error = rpc_error(client.stub.RegisterType, widened, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CREATORS_CHANGED")


def test_an_operator_cannot_reregister_feasibility_run_to_forge_verdicts(client: Client) -> None:
    forged = pb.RegisterTypeRequest(
        name="feasibility_run", policy="design_to_manufacture", schema_version="9", creators=["human"]
    )
    forged.schema.update({"type": "object"})
    error = rpc_error(client.stub.RegisterType, forged, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CREATORS_CHANGED")


@pytest.mark.parametrize("entry", ["service:", "Human", "role:", "service:runs extra", "*", "human:ana"])
def test_a_malformed_creator_entry_is_refused(client: Client, entry: str) -> None:
    request = pb.RegisterTypeRequest(name="memo", policy="scratch", schema_version="1", creators=[entry])
    request.schema.update({"type": "object"})
    error = rpc_error(client.stub.RegisterType, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RULE_INVALID")


def test_a_role_entry_admits_only_people_holding_the_role() -> None:
    reviewer = Principal("human:rita", PrincipalKind.HUMAN, frozenset({"reviewer"}))
    operator = Principal("human:omar", PrincipalKind.HUMAN, frozenset({"operator"}))
    impostor = Principal("service:reviewer", PrincipalKind.SERVICE, frozenset({"reviewer"}))
    assert admits(["role:reviewer"], reviewer)
    assert not admits(["role:reviewer"], operator)
    assert not admits(["role:reviewer", "human"], impostor)
    assert not admits(["service:runs"], Principal("service:runs", PrincipalKind.HUMAN))
