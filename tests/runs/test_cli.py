"""`custody runs ...` as an operator runs it: the real command line against a runs service over gRPC."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from custody.runs.v1 import runs_pb2
from services.common.run_rules import MIGRATION_BATCH_MODE
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import RunsClient, run_input
from tests.support.legacy import legacy_artifact


@pytest.fixture
def partitioned_store(tmp_path: Path) -> Path:
    root = tmp_path / "legacy-runs"
    day = root / "2025-12-17"
    day.mkdir(parents=True)
    (day / "run_abc123def456.json").write_text(json.dumps(legacy_artifact("run_abc123def456")))
    (day / "run_abc123def456_advisory_adv_001.json").write_text(
        json.dumps({"advisory_id": "adv_001", "kind": "explanation", "engine_id": "e", "engine_version": "1"})
    )
    (day / "run_abc123def456_explanation.json").write_text(
        json.dumps({"explanation_status": "READY", "explanation_summary": "clamp the blank"})
    )
    (day / "run_000000000bad.json").write_text("{ this is not json")
    (day / "run_fffffffff000_advisory_x.json").write_text("{}")
    blocked = legacy_artifact(
        "run_b10c4ed00000", status="BLOCKED", decision={"risk_level": "high", "score": 0.2, "block_reason": "thin wall"}
    )
    (root / "2025-12-18").mkdir()
    (root / "2025-12-18" / "run_b10c4ed00000.json").write_text(json.dumps(blocked))
    return root


def report(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout)


def test_migrate_dry_run_reports_every_record_and_writes_nothing(
    cli: Any, runs: RunsClient, partitioned_store: Path
) -> None:
    result = report(cli("migrate", "--from", str(partitioned_store), "--dry-run", "--json", expect=1))
    assert result["counts"]["valid"] == 2 and result["counts"]["error"] == 2
    errors = {Path(r["source"]).name: r["detail"] for r in result["records"] if r["outcome"] == "error"}
    assert "unreadable JSON" in errors["run_000000000bad.json"]
    assert "without its run" in errors["run_fffffffff000_advisory_x.json"]
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []


def test_migrate_imports_runs_with_side_files_then_verifies(
    cli: Any, runs: RunsClient, partitioned_store: Path
) -> None:
    result = report(cli("migrate", "--from", str(partitioned_store), "--json", expect=1))
    assert result["counts"]["created"] == 2 and result["counts"]["error"] == 2
    listed = runs.ListRuns(runs_pb2.ListRunsRequest()).runs
    migrated = {r.meta["legacy"]["run_id"]: r for r in listed if r.mode != MIGRATION_BATCH_MODE}
    first = migrated["run_abc123def456"]
    assert [a.advisory_id for a in first.advisory_inputs] == ["adv_001"]
    assert first.explanation.status == runs_pb2.EXPLANATION_STATUS_READY
    assert first.explanation.summary == "clamp the blank"
    assert first.decision.risk_level == runs_pb2.RISK_LEVEL_GREEN
    assert migrated["run_b10c4ed00000"].status == runs_pb2.RUN_STATUS_BLOCKED


def test_migrating_again_duplicates_nothing(cli: Any, runs: RunsClient, partitioned_store: Path) -> None:
    cli("migrate", "--from", str(partitioned_store), "--json", expect=1)
    again = report(cli("migrate", "--from", str(partitioned_store), "--json", expect=1))
    assert again["counts"]["existing"] == 2 and again["counts"]["created"] == 0
    modes = [r.mode for r in runs.ListRuns(runs_pb2.ListRunsRequest()).runs]
    assert sorted(modes) == ["cnc", "cnc", MIGRATION_BATCH_MODE, MIGRATION_BATCH_MODE]  # two runs, two batches


def test_migrate_reads_the_single_file_map_layout(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    store = tmp_path / "runs.json"
    store.write_text(
        json.dumps({"run_aaa": legacy_artifact("run_aaa"), "run_bbb": legacy_artifact("run_bbb", mode="")})
    )
    result = report(cli("migrate", "--from", str(store), "--json", expect=1))
    assert result["counts"]["created"] == 1
    (error,) = [r for r in result["records"] if r["outcome"] == "error"]
    assert error["legacy_id"] == "run_bbb" and "run.mode" in error["detail"]


def test_list_show_and_verify_all(cli: Any, runs: RunsClient) -> None:
    created = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    listed = json.loads(cli("list", "--json").stdout)
    assert [r["name"] for r in listed] == [created.name]
    assert json.loads(cli("show", created.name, "--json").stdout)["artifact_sha256"] == created.artifact_sha256
    verified = json.loads(cli("verify", "--all", "--json").stdout)
    assert (verified["verified"], verified["failed"]) == (1, 0)


def test_attach_and_bind_from_the_command_line(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    session = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))
    (tmp_path / "c.svg").write_bytes(CLEAN_SVG)
    (tmp_path / "c.json").write_bytes(CLEAN_SPEC)
    cli("attach", session.name, str(tmp_path / "c.svg"), "--kind", "geometry_svg")
    cli("attach", session.name, str(tmp_path / "c.json"), "--kind", "geometry_spec_json")
    bound = json.loads(cli("bind", session.name, "--json").stdout)
    assert bound["decision"] == "FEASIBILITY_DECISION_ALLOW"


def test_export_then_import_round_trips_runs_and_blobs(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    session = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))
    (tmp_path / "c.svg").write_bytes(CLEAN_SVG)
    cli("attach", session.name, str(tmp_path / "c.svg"), "--kind", "geometry_svg")
    cli("export", str(tmp_path / "export"))
    imported = json.loads(cli("import", str(tmp_path / "export"), "--json").stdout)
    (line,) = imported
    copy = runs.GetRun(runs_pb2.GetRunRequest(name=line["run"]))
    assert copy.meta["imported"]["from"] == session.name
    assert copy.hashes == session.hashes
    held = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=copy.name)).attachments
    assert [a.digest.sha256 for a in held] == [hashlib.sha256(CLEAN_SVG).hexdigest()]
    again = json.loads(cli("import", str(tmp_path / "export"), "--json").stdout)
    assert again == imported  # idempotent: same runs, no duplicate attachments
    assert len(runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=copy.name)).attachments) == 1


def test_errors_print_status_reason_and_exit_1(cli: Any) -> None:
    result = cli("show", "runs/../etc", expect=1)
    assert "INVALID_ARGUMENT NAME_INVALID" in result.stderr


def test_download_writes_the_verified_bytes_and_names_their_digest(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    items = [
        runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", content_type="image/svg+xml", data=CLEAN_SVG)
    ]
    (attachment,) = runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items)
    ).attachments
    target = tmp_path / "out.svg"
    result = cli("download", attachment.name, "-o", str(target))
    assert target.read_bytes() == CLEAN_SVG
    assert hashlib.sha256(CLEAN_SVG).hexdigest() in result.stdout
    assert list(tmp_path.glob(".*.part")) == []


def test_download_signed_writes_the_credentialed_asset(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    credentials = runs_pb2.ContentCredentialsRequest(
        source=runs_pb2.ASSET_SOURCE_COMPILED_FROM_MODEL_OUTPUT, provider="local", model="m"
    )
    item = runs_pb2.NewAttachment(
        kind="geometry_svg",
        filename="c.svg",
        content_type="image/svg+xml",
        data=CLEAN_SVG,
        content_credentials=credentials,
    )
    (attachment,) = runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=[item])
    ).attachments
    target = tmp_path / "signed.svg"
    cli("download", attachment.name, "--signed", "-o", str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == attachment.signed_digest.sha256


def test_download_of_corrupted_bytes_exits_1_and_leaves_no_file(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    items = [runs_pb2.NewAttachment(kind="other", filename="x.bin", data=b"original bytes")]
    (attachment,) = runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items)
    ).attachments
    blob_root = Path(runs.harness.settings.resolved_blob_dir)  # type: ignore[attr-defined]
    (stored,) = [p for p in blob_root.rglob(attachment.digest.sha256) if p.is_file()]
    stored.chmod(0o644)
    stored.write_bytes(b"tampered bytes")
    target = tmp_path / "x.bin"
    result = cli("download", attachment.name, "-o", str(target), expect=1)
    assert "DATA_LOSS" in result.stdout + result.stderr
    assert not target.exists() and list(tmp_path.glob(".*.part")) == []
