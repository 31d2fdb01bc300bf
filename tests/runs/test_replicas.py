"""Two runs processes against one PostgreSQL database keep the guarantees one process gives."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.health import check
from services.cli.state import StateLayout
from tests.runs.conftest import run_input
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness, bearer, operator_token, state_layout
from tests.support.processes import CUSTODY, clean_environment, free_port


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


@pytest.fixture
def script() -> ScriptedGateway:
    return ScriptedGateway(delay_s=0.5)


@pytest.fixture
def replicas(layout: StateLayout, postgres_url: str, tmp_path: Path, script: ScriptedGateway) -> Iterator[list[str]]:
    """Two `custody serve runs` processes sharing one database (blobs included) and no filesystem."""
    with ServiceHarness("ai_gateway", layout, factory=fake_gateway(script)) as gateway:  # type: ignore[arg-type]
        ports = [free_port(), free_port()]
        processes = []
        for port in ports:
            env = clean_environment(
                CUSTODY_RUNS_PORT=str(port),
                CUSTODY_RUNS_STATE_DIR=str(layout.root),
                CUSTODY_RUNS_DATABASE_URL=postgres_url,
                CUSTODY_RUNS_BLOB_BACKEND="database",
                CUSTODY_RUNS_BLOB_DIR=str(tmp_path / f"staging-{port}"),
                CUSTODY_RUNS_AI_GATEWAY_ADDRESS=gateway.address,
            )
            command = [*CUSTODY, "serve", "runs", "--config", str(layout.service_config("runs"))]
            processes.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
        addresses = [f"127.0.0.1:{port}" for port in ports]
        try:
            deadline = time.monotonic() + 30
            while not all(check(a, "custody.runs.v1.RunsService") == "SERVING" for a in addresses):
                assert time.monotonic() < deadline, "replicas did not start"
                assert all(p.poll() is None for p in processes), "a replica exited"
                time.sleep(0.1)
            yield addresses
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)


def stubs(addresses: list[str]) -> list[runs_pb2_grpc.RunsServiceStub]:
    return [runs_pb2_grpc.RunsServiceStub(grpc.insecure_channel(a)) for a in addresses]


def test_idempotent_retries_across_replicas_make_one_run(replicas: list[str], layout: StateLayout) -> None:
    auth = bearer(operator_token(layout))
    both = stubs(replicas)
    request = runs_pb2.CreateRunRequest(run=run_input(), request_id="cross-replica-1")
    with ThreadPoolExecutor(max_workers=16) as pool:
        names = set(pool.map(lambda i: both[i % 2].CreateRun(request, metadata=auth, timeout=30).name, range(32)))
    assert len(names) == 1
    assert len(both[0].ListRuns(runs_pb2.ListRunsRequest(), metadata=auth).runs) == 1


def test_concurrent_mints_on_both_replicas_are_all_kept(replicas: list[str], layout: StateLayout) -> None:
    auth = bearer(operator_token(layout))
    both = stubs(replicas)
    with ThreadPoolExecutor(max_workers=16) as pool:
        names = list(
            pool.map(
                lambda i: (
                    both[i % 2].CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=auth, timeout=30).name
                ),
                range(40),
            )
        )
    assert len(set(names)) == 40
    listed = both[1].ListRuns(runs_pb2.ListRunsRequest(page_size=100), metadata=auth).runs
    assert {r.name for r in listed} == set(names)


def test_one_explanation_call_across_replicas(
    replicas: list[str], layout: StateLayout, script: ScriptedGateway
) -> None:
    auth = bearer(operator_token(layout))
    both = stubs(replicas)
    run = both[0].CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=auth)
    request = runs_pb2.SuggestExplanationRequest(name=run.name)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: both[i % 2].SuggestExplanation(request, metadata=auth, timeout=30), range(6)))
    assert len(script.prompts) == 1
    final = both[1].GetRun(runs_pb2.GetRunRequest(name=run.name), metadata=auth)
    assert final.explanation.status == runs_pb2.EXPLANATION_STATUS_READY
    assert len(final.advisory_inputs) == 1


def test_an_attachment_uploaded_through_one_replica_is_read_through_the_other(
    replicas: list[str], layout: StateLayout
) -> None:
    auth = bearer(operator_token(layout))
    first, second = stubs(replicas)
    run = first.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=auth)
    items = [runs_pb2.NewAttachment(kind="other", filename="x.bin", data=b"shared bytes")]
    (attachment,) = first.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items), metadata=auth
    ).attachments
    chunks = second.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name), metadata=auth)
    assert b"".join(c.chunk for c in chunks) == b"shared bytes"
