"""Two lineage processes against one PostgreSQL database keep version numbering, idempotency and staleness exact."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.harness import service_process
from custody.lineage.v1 import lineage_pb2 as pb
from custody.lineage.v1 import lineage_pb2_grpc
from tests.lineage.conftest import meta

pytestmark = pytest.mark.stack

P = "projects/replicas/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[list[Any], tuple[tuple[str, str], ...]]]:
    with ExitStack() as stack:
        running = [
            stack.enter_context(service_process("lineage", tmp_path / "var", database_url=postgres_url))
            for _ in range(2)
        ]
        stubs = [
            lineage_pb2_grpc.LineageServiceStub(stack.enter_context(grpc.insecure_channel(r.address))) for r in running
        ]
        auth = (("authorization", f"Bearer {running[0].layout.operator_token.read_text().strip()}"),)
        yield stubs, auth


def create(
    stub: Any, auth: Any, parent: str, data: dict[str, Any], upstream: list[str] | None = None, **fields: Any
) -> Any:
    request = pb.CreateVersionRequest(parent=parent, metadata=meta(), upstream=upstream or [], **fields)
    request.data.update(data)
    return stub.CreateVersion(request, metadata=auth, timeout=30)


def test_concurrent_creates_across_replicas_number_versions_without_gaps(replicas: Any) -> None:
    stubs, auth = replicas
    with ThreadPoolExecutor(max_workers=16) as pool:
        numbers = list(
            pool.map(
                lambda i: (
                    create(stubs[i % 2], auth, f"{P}/intake/brief", {**INTAKE, "audience": f"a{i}"}).version.version
                ),
                range(24),
            )
        )
    assert sorted(numbers) == list(range(1, 25))


def test_a_retry_on_the_other_replica_returns_the_same_version(replicas: Any) -> None:
    stubs, auth = replicas
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = set(
            pool.map(
                lambda i: create(stubs[i % 2], auth, f"{P}/intake/brief", INTAKE, request_id="retry-1").version.name,
                range(16),
            )
        )
    assert names == {f"{P}/intake/brief/versions/1"}
    listed = stubs[1].ListVersions(pb.ListVersionsRequest(parent=f"{P}/intake/brief"), metadata=auth).versions
    assert len(listed) == 1


def test_a_revision_on_one_replica_makes_the_other_replicas_downstream_stale(replicas: Any) -> None:
    stubs, auth = replicas
    brief = create(stubs[0], auth, f"{P}/intake/brief", INTAKE).version.name
    strategy = create(stubs[1], auth, f"{P}/strategy/main", {"summary": "s"}, upstream=[brief]).version.name
    create(stubs[1], auth, f"{P}/intake/brief", {**INTAKE, "audience": "new"})
    seen_by_first = stubs[0].GetVersion(pb.GetVersionRequest(name=strategy), metadata=auth)
    assert seen_by_first.health.health == pb.HEALTH_STALE
    assert seen_by_first.health.cause == f"{P}/intake/brief/versions/2"
