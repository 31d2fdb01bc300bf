"""A long safety scan never holds the gateway's event loop: over real gRPC, another RPC is answered while the scan of
a large response (whole, or one big streamed chunk) is still running."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from custody.ai_gateway.v1 import gateway_pb2
from services.ai_gateway.detectors import BUILTIN_DETECTORS, Detector
from services.ai_gateway.policy import INLINE_CHECK_CHARS
from services.cli.state import StateLayout
from tests.ai_gateway.conftest import GatewayFactory, as_runs, generate, stream, stub
from tests.ai_gateway.fake_openai import FakeOpenAI, Reply, ok

LARGE = INLINE_CHECK_CHARS * 2  # scanned in a worker thread, and within the output limit


class StuckScan:
    """A secrets detector that, on long texts, waits until the test lets it go; short texts get the real one."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.real = BUILTIN_DETECTORS["secrets"]

    def find(self, text: str) -> list[tuple[int, int]]:
        if len(text) <= INLINE_CHECK_CHARS:
            return self.real.find(text)
        self.entered.set()
        self.release.wait(20)
        return []


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StuckScan:
    scan = StuckScan()
    monkeypatch.setitem(BUILTIN_DETECTORS, "secrets", Detector("secrets", "secrets (held by the test)", scan.find))
    return scan


def _served_during_the_scan(stuck: StuckScan, layout: StateLayout, gateway: Any, call: Callable[[], Any]) -> Any:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call)
        try:
            assert stuck.entered.wait(10), "the large response was never scanned"
            info = stub(gateway).GetServiceInfo(
                gateway_pb2.GetServiceInfoRequest(), metadata=as_runs(layout), timeout=5
            )
            assert info.service == "custody.ai_gateway.v1.AiGatewayService"
            assert not pending.done() and not stuck.release.is_set()  # answered while the scan runs
        finally:
            stuck.release.set()
        return pending.result(timeout=20)


def test_another_rpc_is_served_while_a_large_response_is_scanned(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, stuck: StuckScan, patient_policy: Path
) -> None:
    gateway = start_gateway(fake, policy_file=patient_policy)
    fake.script(ok("r" * LARGE))
    response = _served_during_the_scan(stuck, layout, gateway, lambda: generate(gateway, layout, timeout=30))
    assert response.content == "r" * LARGE


def test_another_rpc_is_served_while_a_large_streamed_chunk_is_scanned(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, stuck: StuckScan, patient_policy: Path
) -> None:
    gateway = start_gateway(fake, policy_file=patient_policy)
    fake.script(Reply(kind="stream", content="s" * LARGE, chunk_size=LARGE))
    events = _served_during_the_scan(stuck, layout, gateway, lambda: stream(gateway, layout, timeout=30))
    assert "".join(e.chunk.text for e in events if e.HasField("chunk")) == "s" * LARGE
