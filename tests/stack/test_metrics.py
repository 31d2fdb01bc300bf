"""The metrics an operator watches, scraped over HTTP from real `custody serve` processes: each series exists and
moves when the work it measures happens (README "Metrics")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout
from tests.runs.conftest import run_input
from tests.support.harness import bearer, operator_token, state_layout
from tests.support.processes import ServedProcess, serving

pytestmark = pytest.mark.stack

TOKENS_PER_DAY = 1_000_000
OK, NOT_FOUND, UNAUTHENTICATED = 0, 5, 16


class Scrape:
    """One scrape of a /metrics endpoint: sample values by name and labels (labels not named are summed over)."""

    def __init__(self, url: str) -> None:
        with urlopen(url, timeout=10) as response:
            assert response.headers.get_content_type() == "text/plain"
            text = response.read().decode()
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        matching = [s.value for s in self.samples if s.name == name and _has(s.labels, labels)]
        return sum(matching)

    def has(self, name: str, **labels: str) -> bool:
        return any(s.name == name and _has(s.labels, labels) for s in self.samples)


def _has(sample_labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(sample_labels.get(key) == value for key, value in wanted.items())


@dataclass
class Served:
    layout: StateLayout
    gateway: ServedProcess
    runs: ServedProcess

    @property
    def operator(self) -> tuple[tuple[str, str], ...]:
        return bearer(operator_token(self.layout))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("metrics")
    layout = state_layout(root / "var")
    budgets = json.dumps({"*": {"tokens_per_day": TOKENS_PER_DAY}})
    with (
        serving("ai_gateway", layout.root, root, budgets=budgets) as gateway,
        serving("runs", layout.root, root) as runs,
    ):
        yield Served(layout, gateway, runs)


def generate_text(served: Served) -> None:
    with grpc.insecure_channel(served.gateway.address) as channel:
        request = gateway_pb2.GenerateTextRequest(operation="general_text", prompt="Describe a rosette briefly.")
        gateway_pb2_grpc.AiGatewayServiceStub(channel).GenerateText(request, metadata=served.operator, timeout=30)


def rpc_count(scrape: Scrape, method: str, code: int) -> float:
    return scrape.value("rpc_server_call_duration_seconds_count", rpc_method=method, rpc_grpc_status_code=str(code))


def scrape_once_counted(url: str, method: str, code: int, at_least: float) -> Scrape:
    """A scrape once `method` ended with `code` at least that often: a server records a call's duration as the
    call ends, which can be just after its answer reached the client."""
    deadline = time.monotonic() + 5
    while True:
        scrape = Scrape(url)
        if rpc_count(scrape, method, code) >= at_least or time.monotonic() > deadline:
            return scrape
        time.sleep(0.05)


def test_rpcs_are_counted_by_method_and_status_code(served: Served) -> None:
    before = Scrape(served.runs.metrics_url)
    with grpc.insecure_channel(served.runs.address) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        for _ in range(2):
            stub.GetServiceInfo(runs_pb2.GetServiceInfoRequest(), metadata=served.operator, timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetServiceInfo(runs_pb2.GetServiceInfoRequest(), metadata=bearer("cst_wrong"), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetRun(runs_pb2.GetRunRequest(name="runs/run_" + "0" * 32), metadata=served.operator, timeout=10)
    expected = rpc_count(before, "GetRun", NOT_FOUND) + 1
    after = scrape_once_counted(served.runs.metrics_url, "GetRun", NOT_FOUND, expected)
    assert rpc_count(after, "GetServiceInfo", OK) - rpc_count(before, "GetServiceInfo", OK) == 2
    assert (
        rpc_count(after, "GetServiceInfo", UNAUTHENTICATED) - rpc_count(before, "GetServiceInfo", UNAUTHENTICATED) == 1
    )
    assert rpc_count(after, "GetRun", NOT_FOUND) - rpc_count(before, "GetRun", NOT_FOUND) == 1
    labels = {
        "rpc_service": "custody.runs.v1.RunsService",
        "rpc_method": "GetServiceInfo",
        "service_name": "custody-runs",
    }
    assert after.has("rpc_server_call_duration_seconds_bucket", le="0.001", **labels)


def test_a_text_call_moves_the_gateway_series(served: Served) -> None:
    caller = {"caller": "human:operator", "operation": "general_text", "model": "custody-local-1"}
    before = Scrape(served.gateway.metrics_url)
    generate_text(served)
    after = Scrape(served.gateway.metrics_url)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("custody_gateway_calls_total", outcome="SUCCEEDED", **caller) == 1
    assert moved("custody_gateway_tokens_total", token_type="input", **caller) > 0
    assert moved("custody_gateway_tokens_total", token_type="output", **caller) > 0
    assert after.has("custody_gateway_cost_usd_total", **caller)  # the local model's known zero
    assert moved("custody_group_commit_batch_size_count", group_commit="ai-audit") == 1
    assert (
        moved("custody_group_commit_commit_duration_seconds_count", group_commit="ai-audit", outcome="committed") == 1
    )
    assert moved("rpc_server_call_duration_seconds_count", rpc_method="GenerateText", rpc_grpc_status_code="0") == 1


def test_the_budget_remaining_falls_as_a_caller_spends(served: Served) -> None:
    generate_text(served)
    first = Scrape(served.gateway.metrics_url).value("custody_gateway_budget_tokens_remaining", caller="human:operator")
    generate_text(served)
    second = Scrape(served.gateway.metrics_url).value(
        "custody_gateway_budget_tokens_remaining", caller="human:operator"
    )
    assert 0 < second < first < TOKENS_PER_DAY


def test_an_upload_grows_the_blob_bytes_stored_and_each_write_is_a_batch(served: Served) -> None:
    data = b"<svg xmlns='http://www.w3.org/2000/svg'/>" + Path(__file__).name.encode()
    before = Scrape(served.runs.metrics_url)
    with grpc.insecure_channel(served.runs.address) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        run = stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=served.operator, timeout=30)
        header = runs_pb2.AttachmentHeader(run=run.name, kind="geometry_svg", filename="candidate-1.svg")
        messages = [runs_pb2.UploadAttachmentRequest(header=header), runs_pb2.UploadAttachmentRequest(chunk=data)]
        stub.UploadAttachment(iter(messages), metadata=served.operator, timeout=30)
    after = Scrape(served.runs.metrics_url)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("custody_blobs_stored_bytes_total", backend="filesystem") == len(data)
    assert moved("custody_group_commit_batch_size_count", group_commit="runs-mint") == 1
    assert moved("custody_group_commit_batch_size_count", group_commit="runs-attach") == 1
    assert moved("rpc_server_call_duration_seconds_count", rpc_method="UploadAttachment", rpc_grpc_status_code="0") == 1


def test_the_outbox_backlog_is_read_from_the_runs_database(served: Served) -> None:
    scrape = Scrape(served.runs.metrics_url)
    assert scrape.has("custody_outbox_backlog", service_name="custody-runs")
    assert scrape.value("custody_outbox_backlog") == 0  # nothing minted here waits for lineage
