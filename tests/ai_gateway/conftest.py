"""Fixtures for the gateway tests: a fake OpenAI-compatible server, and the gateway served over real gRPC."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.ai_gateway.config import DEFAULT_POLICY_FILE
from services.cli.state import StateLayout
from services.common import status
from tests.ai_gateway.fake_openai import FakeOpenAI
from tests.support.harness import ServiceHarness, bearer, operator_token, service_token, state_layout

# A provider key that must never show up anywhere but in the request to the provider.
CANARY_KEY = "sk-canary-3f9a1c7e5b2d4a6f8e0c1b3d5f7a9c2e"
FAST_RETRIES = {"backoff_initial_s": "0.01", "backoff_max_s": "0.05", "provider_timeout_s": "2"}


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


GatewayFactory = Callable[..., ServiceHarness]


@pytest.fixture
def start_gateway(layout: StateLayout, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayFactory]:
    """Starts the gateway; with `fake=` it talks to that server through the openai provider (the default)."""
    started: list[ServiceHarness] = []

    def start(fake: FakeOpenAI | None = None, **settings: Any) -> ServiceHarness:
        values = dict(FAST_RETRIES)
        if fake is not None:
            monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
            values["openai_base_url"] = fake.base_url
        else:
            monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        values.update({k: str(v) for k, v in settings.items()})
        harness = ServiceHarness("ai_gateway", layout, settings=values)
        harness.__enter__()
        started.append(harness)
        return harness

    def stop(harness: ServiceHarness) -> None:
        started.remove(harness)
        harness.__exit__(None, None, None)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for harness in reversed(started):
        harness.__exit__(None, None, None)


@pytest.fixture
def gateway(start_gateway: GatewayFactory, fake: FakeOpenAI) -> ServiceHarness:
    return start_gateway(fake)


@pytest.fixture
def patient_policy(tmp_path: Path) -> Path:
    """The default policy with a detector budget of 30 s: for tests about concurrency, not the safety budget.

    The default 250 ms fails closed on a loaded CI machine when hundreds of calls are scanned at once.
    """
    document = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    document["detector_timeout_ms"] = 30_000
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def stub(harness: ServiceHarness) -> gateway_pb2_grpc.AiGatewayServiceStub:
    return gateway_pb2_grpc.AiGatewayServiceStub(harness.channel())


def as_runs(layout: StateLayout) -> tuple[tuple[str, str], ...]:
    return bearer(service_token(layout, "runs"))


def as_operator(layout: StateLayout) -> tuple[tuple[str, str], ...]:
    return bearer(operator_token(layout))


def text_request(**fields: Any) -> gateway_pb2.GenerateTextRequest:
    fields.setdefault("operation", "general_text")
    fields.setdefault("prompt", "Describe a rosette in two sentences.")
    return gateway_pb2.GenerateTextRequest(**fields)


def generate(harness: ServiceHarness, layout: StateLayout, timeout: float = 10, **fields: Any) -> Any:
    return stub(harness).GenerateText(text_request(**fields), metadata=as_runs(layout), timeout=timeout)


def stream(harness: ServiceHarness, layout: StateLayout, timeout: float = 10, **fields: Any) -> list[Any]:
    fields.setdefault("operation", "general_text")
    fields.setdefault("prompt", "Describe a rosette in two sentences.")
    request = gateway_pb2.StreamTextRequest(**fields)
    return list(stub(harness).StreamText(request, metadata=as_runs(layout), timeout=timeout))


def rpc_error(function: Callable[[], Any]) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        function()
    return status.decode(raised.value)
