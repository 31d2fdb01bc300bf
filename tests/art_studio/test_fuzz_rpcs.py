"""Every ArtStudioService RPC with generated hostile requests: none may end INTERNAL or UNKNOWN, and the service
still answers SERVING afterwards. art_studio calls a real ai_gateway (offline local provider), a real runs and a
real lineage, so generation, attachment and lineage recording take their real paths."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.art_studio.v1 import art_studio_pb2 as pb
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout
from tests.art_studio.specs import CLASSIC, spec_text
from tests.runs.candidates import CLEAN_SVG, HOSTILE_SVGS
from tests.runs.conftest import run_input
from tests.support.fuzz import Fuzzer
from tests.support.harness import ServiceHarness, bearer, service_token, state_layout


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


@pytest.fixture
def studio(layout: StateLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceHarness]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the gateway answers with its offline local provider
    with (
        ServiceHarness("ai_gateway", layout, settings={"database_url": f"sqlite:///{tmp_path}/gw.db"}) as gateway,
        ServiceHarness("lineage", layout, settings={"database_url": f"sqlite:///{tmp_path}/lineage.db"}) as lineage,
    ):
        runs_settings = {
            "database_url": f"sqlite:///{tmp_path}/runs.db",
            "blob_dir": str(tmp_path / "blobs"),
            "ai_gateway_address": gateway.address,
            "lineage_address": lineage.address,
        }
        with ServiceHarness("runs", layout, settings=runs_settings) as runs:
            settings = {
                "ai_gateway_address": gateway.address,
                "runs_address": runs.address,
                "lineage_address": lineage.address,
            }
            with ServiceHarness("art_studio", layout, settings=settings) as harness:
                # A session art_studio owns, as one of its earlier new_session calls would have made.
                session = runs_pb2_grpc.RunsServiceStub(runs.channel()).CreateRun(
                    runs_pb2.CreateRunRequest(run=run_input(mode="design_session")),
                    metadata=bearer(service_token(layout, "art_studio")),
                    timeout=30,
                )
                harness.session = session.name  # type: ignore[attr-defined]
                yield harness


def _generate(session: str) -> object:
    def seed(rng: random.Random, names: list[str]) -> pb.GenerateCandidatesRequest:
        return pb.GenerateCandidatesRequest(
            prompt="a 12 petal rosette",
            diameter_mm=100,
            count=rng.randrange(1, 3),
            variant_seed=f"fuzz:{rng.randrange(3)}",
            **rng.choice([{"run": session}, {"new_session": True}, {}]),
        )

    return seed


# four RPCs, stateless: more calls each, still a few seconds.
CALLS_PER_RPC = 400


def test_no_generated_request_reaches_internal_and_the_service_keeps_serving(
    studio: ServiceHarness, layout: StateLayout
) -> None:
    seeds = {
        "GenerateCandidates": _generate(studio.session),  # type: ignore[attr-defined]
        "CompileSpec": lambda rng, names: pb.CompileSpecRequest(spec_json=spec_text(CLASSIC)),
        "ValidateSvg": lambda rng, names: pb.ValidateSvgRequest(
            svg=rng.choice([CLEAN_SVG, *(svg for family in HOSTILE_SVGS.values() for svg in family)])
        ),
    }
    fuzzer = Fuzzer(studio, layout, pb.DESCRIPTOR.services_by_name["ArtStudioService"], seeds, CALLS_PER_RPC)
    fuzzer.assert_survives()
