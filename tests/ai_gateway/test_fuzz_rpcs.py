"""Every AiGatewayService RPC with generated hostile requests (the text stream consumed to its end): none may end
INTERNAL or UNKNOWN, and the service still answers SERVING afterwards. The gateway answers with its offline local
provider, so generation runs its whole path (policy, pricing, audit) without a network."""

from __future__ import annotations

import json
import random

from custody.ai_gateway.v1 import gateway_pb2 as pb
from services.cli.state import StateLayout
from tests.ai_gateway.conftest import GatewayFactory
from tests.support.fuzz import Fuzzer

SCHEMA = json.dumps({"type": "object", "properties": {"shapes": {"type": "array"}}})


def _text(kind: type, rng: random.Random) -> object:
    return kind(
        operation=rng.choice(["general_text", "rosette_spec"]),
        prompt="Describe a rosette in two sentences.",
        variant_seed=f"fuzz:{rng.randrange(4)}",
        response_json_schema=SCHEMA if rng.random() < 0.3 else "",
    )


def _call(rng: random.Random, names: list[str]) -> pb.GetCallRequest:
    calls = [n for n in names if n.startswith("calls/")]
    return pb.GetCallRequest(name=rng.choice(calls) if calls else "calls/1")


SEEDS = {
    "GenerateText": lambda rng, names: _text(pb.GenerateTextRequest, rng),
    "StreamText": lambda rng, names: _text(pb.StreamTextRequest, rng),
    "GenerateImage": lambda rng, names: pb.GenerateImageRequest(
        operation="concept_image",
        prompt="A rosette with eight petals.",
        size="256x256",
        seed=f"fuzz:{rng.randrange(4)}",
    ),
    "GetCall": _call,
    "ListCalls": lambda rng, names: pb.ListCallsRequest(page_size=1),
}

# six cheap RPCs (no database writes but the audit): more calls each, still a few seconds.
CALLS_PER_RPC = 500


def test_no_generated_request_reaches_internal_and_the_service_keeps_serving(
    start_gateway: GatewayFactory, layout: StateLayout
) -> None:
    gateway = start_gateway()  # no fake provider: the offline local one
    fuzzer = Fuzzer(gateway, layout, pb.DESCRIPTOR.services_by_name["AiGatewayService"], SEEDS, CALLS_PER_RPC)
    fuzzer.assert_survives()
