from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout, save_endpoints
from services.common.hashing import sha256_canonical
from services.common.identity import OPERATOR_ROLE, Principal, PrincipalKind
from tests.lineage.conftest import add_principal
from tests.support.harness import ServiceHarness, bearer, operator_token, service_token, state_layout
from tests.support.processes import clean_environment, custody


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


class RunsClient:
    """A runs stub that calls as the operator unless told otherwise."""

    def __init__(self, harness: ServiceHarness, layout: StateLayout) -> None:
        self.harness = harness
        self.layout = layout
        self.stub = runs_pb2_grpc.RunsServiceStub(harness.channel())
        self.operator = bearer(operator_token(layout))

    def as_service(self, service: str) -> tuple[tuple[str, str], ...]:
        return bearer(service_token(self.layout, service))

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self.stub, method)

        def call(request: Any, metadata: tuple[tuple[str, str], ...] | None = None, **kwargs: Any) -> Any:
            return rpc(request, metadata=self.operator if metadata is None else metadata, timeout=30, **kwargs)

        return call


@pytest.fixture
def runs_harness(layout: StateLayout, database_url: str, tmp_path: Path) -> Iterator[ServiceHarness]:
    settings = {"database_url": database_url, "blob_dir": str(tmp_path / "blobs"), "max_attachment_bytes": "3000000"}
    with ServiceHarness("runs", layout, settings=settings) as harness:
        yield harness


@pytest.fixture
def runs(runs_harness: ServiceHarness, layout: StateLayout) -> RunsClient:
    return RunsClient(runs_harness, layout)


@pytest.fixture
def cli(runs: RunsClient) -> Iterator[Any]:
    """`custody runs ARGS` as the operator, against the `runs` service; checks the exit code."""
    save_endpoints(runs.layout, {"runs": runs.harness.address})

    def run_cli(*args: str, expect: int = 0) -> Any:
        result = custody("runs", *args, "--state-dir", str(runs.layout.root), env=clean_environment())
        assert result.returncode == expect, result.stdout + result.stderr
        return result

    yield run_cli


@pytest.fixture
def operator_without_migrator_role(layout: StateLayout, sqlite_url: str, tmp_path: Path) -> Iterator[RunsClient]:
    token = add_principal(layout, Principal("human:olga", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE})))
    settings = {"database_url": sqlite_url, "blob_dir": str(tmp_path / "blobs")}
    with ServiceHarness("runs", layout, settings=settings) as harness:
        client = RunsClient(harness, layout)
        client.operator = bearer(token)
        yield client


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def run_input(**overrides: Any) -> runs_pb2.RunInput:
    """A valid, complete run as a CNC pipeline would submit it."""
    feasibility = {"checks": ["clearance", "depth"], "passed": True}
    fields: dict[str, Any] = {
        "mode": "cnc_rosette",
        "tool_id": "router-0.5mm",
        "status": runs_pb2.RUN_STATUS_OK,
        "request_summary": struct({"diameter_mm": 100, "prompt_sha256": "ab" * 32}),
        "feasibility": struct(feasibility),
        "decision": runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.92, warnings=["tight radius"]),
        "hashes": runs_pb2.Hashes(feasibility_sha256=sha256_canonical(feasibility)),
        "outputs": {"gcode": "pending"},
        "meta": struct({"operator": "ana"}),
        "engine_version": "cam-engine/2.1",
    }
    fields.update(overrides)
    return runs_pb2.RunInput(**fields)


def error_of(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value
