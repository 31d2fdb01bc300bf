"""Crash safety, the seconds-long version of `python -m bench.faults.crash`: real runs and lineage processes killed
with SIGKILL under load from concurrent clients and restarted, on SQLite and on PostgreSQL; every acknowledged write
must read back with the digest acknowledged, no retry may duplicate a record, the operator's checks must pass, and a
client killed mid-upload must leave nothing visible. One more test proves the harness's checks can fail."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.faults.crash import run_crash
from bench.faults.crash_checks import read_back, storage
from bench.faults.crash_clients import Client, Tally, bearer, run_input
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.db import create_engine
from services.runs import tables
from services.runs.config import RunsSettings
from tests.support.harness import ServiceHarness, operator_token, second_reviewer_token, state_layout

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acknowledged_writes_survive_sigkills_and_a_client_killed_mid_upload_leaves_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    dsn = str(request.getfixturevalue("postgres_url")) if backend == "postgresql" else ""
    figures = run_crash(backend, 3, 2, seed=8, upload_kills=1, postgres_dsn=dsn, checks_in_process=True)
    assert figures["kills_under_load"] == 3 and figures["kills_by_process"]["runs"] >= 1  # then both once more
    assert figures["acknowledged_by_kind"].keys() == {"run", "attachment", "version", "approval"}
    assert (figures["lost"], figures["mismatches"], figures["duplicates"], figures["refused"]) == (0, 0, 0, 0)
    assert figures["reads_during_kills"] == figures["acknowledged_by_kind"]["attachment"]
    assert figures["broken_reads"] == 0
    assert (figures["orphan_rows"], figures["partial_blobs"]) == (0, 0)
    assert {label: check["ok"] for label, check in figures["operator_checks"].items()} == {
        "runs verify --all": True,
        "ledger audit runs": True,
        "ledger audit lineage": True,
    }
    assert figures["upload_kills"] == {"killed": 1, "killed_with_partial_file": 1, "reuploaded": 1, "problems": []}
    assert figures["ok"]


def test_the_checks_report_lost_changed_and_duplicated_writes_and_partial_blobs_and_orphan_rows(
    tmp_path: Path,
) -> None:
    layout = state_layout(tmp_path / "var")
    reviewer = second_reviewer_token(layout)
    with (
        ServiceHarness("lineage", layout) as lineage,
        ServiceHarness("runs", layout, settings={"lineage_address": lineage.address}) as runs,
    ):
        addresses = {"runs": runs.address, "lineage": lineage.address}
        tally = Tally()
        Client(0, addresses, operator_token(layout), reviewer, tally, seed=1).operation("c0-0")
        run = next(a for a in tally.acked if a.kind == "run")
        runs_pb2_grpc.RunsServiceStub(runs.channel()).CreateRun(  # the same operation minted again, another key
            runs_pb2.CreateRunRequest(run=run_input("c0-0"), request_id="another-key"),
            metadata=bearer(operator_token(layout)),
        )
        changed = replace(run, sha256="0" * 64)
        lost = replace(run, name="runs/run_" + "0" * 32)
        back = read_back(addresses, operator_token(layout), [*tally.acked, changed, lost])

        settings = runs.settings
        assert isinstance(settings, RunsSettings)
        digest = hashlib.sha256(b"all of it").hexdigest()
        (settings.resolved_blob_dir / "sha256" / digest[:2] / digest[2:4]).mkdir(parents=True)
        (settings.resolved_blob_dir / "sha256" / digest[:2] / digest[2:4] / digest).write_bytes(b"half of it")
        engine = create_engine(settings.resolved_database_url)
        with engine.begin() as connection:
            connection.execute(sa.insert(tables.blobs).values(sha256="f" * 64, size_bytes=1, created_at_us=0))
        engine.dispose()
        stored = storage(settings)
    assert back.lost == [f"run runs/run_{'0' * 32} (c0-0): NOT_FOUND"]
    assert back.mismatches == [f"run {run.name}: acknowledged {'0' * 64}, now {run.sha256}"]
    assert back.duplicates == ["2 runs for c0-0"]
    assert back.checked == {"run": 3, "attachment": 1, "version": 1, "approval": 1}
    assert stored.partial_blobs == [f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"]
    assert stored.orphan_rows == [f"blob row {'f' * 64} that no attachment names"]
