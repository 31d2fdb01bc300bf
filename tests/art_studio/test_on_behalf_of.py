"""Who caused an art_studio AI call: the real gateway records service:art_studio as the caller and the person who
asked art_studio (its own authenticated caller) as on_behalf_of, for the spec and for the concept image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.runs.v1 import runs_pb2_grpc
from services.cli.state import StateLayout
from tests.support.harness import ServiceHarness, bearer, operator_token, state_layout


class Stack:
    def __init__(self, gateway: ServiceHarness, runs: ServiceHarness, studio: ServiceHarness, layout: StateLayout):
        self.gateway = gateway_pb2_grpc.AiGatewayServiceStub(gateway.channel())
        self.runs = runs_pb2_grpc.RunsServiceStub(runs.channel())
        self.studio = art_studio_pb2_grpc.ArtStudioServiceStub(studio.channel())
        self.auth = bearer(operator_token(layout))

    def call(self, name: str) -> gateway_pb2.Call:
        return self.gateway.GetCall(gateway_pb2.GetCallRequest(name=name), metadata=self.auth, timeout=10)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the real gateway, with its offline local provider
    layout = state_layout(tmp_path / "var")
    runs_settings = {"database_url": f"sqlite:///{tmp_path}/runs.db", "blob_dir": str(tmp_path / "blobs")}
    with (
        ServiceHarness("ai_gateway", layout) as gateway,
        ServiceHarness("runs", layout, settings=runs_settings) as runs,
        ServiceHarness(
            "art_studio", layout, settings={"ai_gateway_address": gateway.address, "runs_address": runs.address}
        ) as studio,
    ):
        yield Stack(gateway, runs, studio, layout)


def test_a_candidate_generated_for_the_operator_records_both_in_the_gateway(stack: Stack) -> None:
    request = art_studio_pb2.GenerateCandidatesRequest(prompt="a 12 petal rosette", diameter_mm=100, count=1)
    (candidate,) = stack.studio.GenerateCandidates(request, metadata=stack.auth, timeout=30).candidates
    assert candidate.ok, candidate
    assert (candidate.envelope.caller.id, candidate.envelope.on_behalf_of.id) == (
        "service:art_studio",
        "human:operator",
    )
    stored = stack.call(candidate.envelope.call).envelope
    assert (stored.caller.id, stored.on_behalf_of.id) == ("service:art_studio", "human:operator")


def test_a_concept_image_generated_for_the_operator_records_both(stack: Stack) -> None:
    request = art_studio_pb2.GenerateCandidatesRequest(
        prompt="a 12 petal rosette", diameter_mm=100, count=1, new_session=True, concept_image=True
    )
    (candidate,) = stack.studio.GenerateCandidates(request, metadata=stack.auth, timeout=30).candidates
    assert candidate.ok, candidate
    envelope = stack.call(candidate.concept_image_envelope.call).envelope
    assert envelope.image_sha256 == [candidate.concept_image_sha256]
    assert (envelope.caller.id, envelope.on_behalf_of.id) == ("service:art_studio", "human:operator")
