"""Every LineageService RPC with generated hostile requests: none may end INTERNAL or UNKNOWN, and the service
still answers SERVING afterwards."""

from __future__ import annotations

import random
from pathlib import Path

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout
from tests.lineage.conftest import meta
from tests.support.fuzz import Fuzzer
from tests.support.harness import ServiceHarness

P = "projects/fuzz/artifacts"


def _create(rng: random.Random, names: list[str]) -> pb.CreateVersionRequest:
    request = pb.CreateVersionRequest(
        parent=f"{P}/intake/brief-{rng.randrange(3)}",
        metadata=meta(),
        upstream=[n for n in names if "/versions/" in n][-1:] if rng.random() < 0.3 else [],
    )
    request.data.update({"client": "acme", "objectives": ["grow"]})
    return request


def _named(kind: type, rng: random.Random, names: list[str], **fields: object) -> object:
    versions = [n for n in names if "/versions/" in n] or [f"{P}/intake/brief-0/versions/1"]
    return kind(name=rng.choice(versions), **fields)


def _register(rng: random.Random, names: list[str]) -> pb.RegisterTypeRequest:
    request = pb.RegisterTypeRequest(name="storyboard", policy="film", schema_version=str(rng.randrange(3)))
    request.schema.update({"type": "object", "required": ["frames"]})
    return request


SEEDS = {
    "CreateVersion": _create,
    "RegisterType": _register,
    "GetVersion": lambda rng, names: _named(pb.GetVersionRequest, rng, names),
    "ListVersions": lambda rng, names: pb.ListVersionsRequest(parent=f"{P}/intake/brief-0", page_size=1),
    "DiffVersions": lambda rng, names: pb.DiffVersionsRequest(
        base=f"{P}/intake/brief-0/versions/1", target=f"{P}/intake/brief-0/versions/{rng.randrange(1, 4)}"
    ),
    "Approve": lambda rng, names: _named(pb.ApproveRequest, rng, names, rationale="fine"),
    "Flag": lambda rng, names: _named(pb.FlagRequest, rng, names, rationale="odd"),
    "Reject": lambda rng, names: _named(pb.RejectRequest, rng, names, rationale="no"),
    "AssessHealth": lambda rng, names: _named(
        pb.AssessHealthRequest, rng, names, health=pb.HEALTH_CONFIRMED_VALID, rationale="still holds"
    ),
    "ListStale": lambda rng, names: pb.ListStaleRequest(parent="projects/fuzz", page_size=1),
    "GetUpstream": lambda rng, names: _named(pb.GetUpstreamRequest, rng, names, page_size=1),
    "GetDownstream": lambda rng, names: _named(pb.GetDownstreamRequest, rng, names, page_size=1),
    "BuildPlan": lambda rng, names: pb.BuildPlanRequest(policy="marketing", selected_jobs=["campaign_strategy"]),
    "GetPolicy": lambda rng, names: pb.GetPolicyRequest(name="marketing"),
}


def test_no_generated_request_reaches_internal_and_the_service_keeps_serving(
    layout: StateLayout, tmp_path: Path
) -> None:
    settings = {"database_url": f"sqlite:///{tmp_path}/lineage.db"}
    with ServiceHarness("lineage", layout, settings=settings) as harness:
        fuzzer = Fuzzer(harness, layout, pb.DESCRIPTOR.services_by_name["LineageService"], SEEDS)
        fuzzer.assert_survives()
