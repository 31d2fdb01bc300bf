"""Legacy migration as custody: every migrated run keeps the exact bytes it was read from (kind legacy_source), and
every migration is itself a run, the batch (mode legacy_migration), holding the source location, the file list
with digests, the tool version and the report. Real runs service over gRPC, real `custody` command line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from custody.runs.v1 import runs_pb2
from services.cli.legacy import map_spans
from services.common import status
from services.common.db import create_engine
from services.common.run_rules import LEGACY_SOURCE_KIND, MIGRATION_BATCH_MODE
from services.runs import tables
from services.runs.domain import withdrawals
from tests.runs.conftest import RunsClient, run_input, struct
from tests.runs.test_migrate import (
    batches,
    by_legacy_id,
    migrate,
    migrated_runs,
    write_map,
    write_partitions,
)

DAY = "2025-12-17"


def attachments(runs: RunsClient, run: str, kind: str = LEGACY_SOURCE_KIND) -> list[runs_pb2.Attachment]:
    page = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run, kind=kind, page_size=100))
    return list(reversed(page.attachments))


def read(runs: RunsClient, attachment: str) -> bytes:
    return b"".join(m.chunk for m in runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment)))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def only_batch(runs: RunsClient) -> runs_pb2.Run:
    (batch,) = batches(runs)
    return batch


def batch_file(runs: RunsClient, batch: runs_pb2.Run, filename: str) -> Any:
    (found,) = [a for a in attachments(runs, batch.name, "report_json") if a.filename == filename]
    return json.loads(read(runs, found.name))


def test_a_partitioned_record_keeps_its_core_file_and_side_files_byte_for_byte(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001")
    migrate(cli, root)
    run = by_legacy_id(runs)["run_aaa000000001"]
    kept = {a.metadata["legacy_path"]: a for a in attachments(runs, run.name)}
    assert set(kept) == {
        f"{DAY}/run_aaa000000001.json",
        f"{DAY}/run_aaa000000001_advisory_adv_001.json",
        f"{DAY}/run_aaa000000001_explanation.json",
    }
    for path, attachment in kept.items():
        on_disk = (root / path).read_bytes()
        assert read(runs, attachment.name) == on_disk
        assert attachment.digest.sha256 == sha256(on_disk)
    assert {a.metadata["legacy_role"] for a in kept.values()} == {"record", "advisory", "explanation"}


def test_a_record_of_a_map_file_keeps_exactly_its_bytes_of_the_file_and_the_batch_keeps_the_file(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    store = tmp_path / "legacy" / "runs.json"
    write_map(store, "run_bbb000000001", "run_bbb000000002")
    data = store.read_bytes()
    spans = map_spans(data)
    migrate(cli, store.parent)
    for legacy_id, run in by_legacy_id(runs).items():
        (kept,) = attachments(runs, run.name)
        start, end = spans[legacy_id]
        assert read(runs, kept.name) == data[start:end]
        assert (kept.metadata["legacy_byte_start"], kept.metadata["legacy_byte_end"]) == (str(start), str(end))
        assert kept.metadata["legacy_container_sha256"] == sha256(data)
    (whole,) = attachments(runs, only_batch(runs).name)
    assert read(runs, whole.name) == data and whole.metadata["legacy_role"] == "map"


def test_the_batch_run_records_the_source_the_tool_version_the_file_list_and_the_report(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001")
    write_map(root / "runs.json", "run_bbb000000001")
    result = migrate(cli, root)
    batch = only_batch(runs)
    assert result["batch"] == batch.name and batch.tool_id == "custody-migrate"
    migration = json_format.MessageToDict(batch.meta)["migration"]
    assert migration["source"] == str(root.resolve())
    assert migration["tool_version"].startswith("custody-migrate/") and migration["keep_source"] is True
    files = batch_file(runs, batch, "files.json")
    on_disk = sorted(p for p in root.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in files) == sorted(p.relative_to(root).as_posix() for p in on_disk)
    assert all(f["sha256"] == sha256((root / f["path"]).read_bytes()) for f in files)
    assert migration["files_sha256"] == json_format.MessageToDict(batch.feasibility)["files_sha256"]
    report = batch_file(runs, batch, "report.json")
    assert report["counts"]["created"] == 2 and report["batch"] == batch.name
    assert {r["run"] for r in report["records"]} == {r.name for r in migrated_runs(runs)}
    assert runs.VerifyRun(runs_pb2.VerifyRunRequest(name=batch.name)).ok


def test_every_run_a_migration_mints_carries_the_request_id_of_its_batch(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    write_partitions(tmp_path / "legacy", "run_aaa000000001", "run_aaa000000002")
    migrate(cli, tmp_path / "legacy")
    assert {r.request_id for r in migrated_runs(runs)} == {only_batch(runs).request_id}


def test_no_keep_source_is_an_explicit_opt_out_recorded_on_the_batch(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    write_partitions(tmp_path / "legacy", "run_aaa000000001")
    migrate(cli, tmp_path / "legacy", 0, "--no-keep-source")
    (run,) = migrated_runs(runs)
    assert attachments(runs, run.name) == []
    assert json_format.MessageToDict(only_batch(runs).meta)["migration"]["keep_source"] is False


def test_a_dry_run_writes_nothing_not_even_a_batch(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    write_partitions(tmp_path / "legacy", "run_aaa000000001")
    result = migrate(cli, tmp_path / "legacy", 0, "--dry-run")
    assert result["counts"]["valid"] == 1 and result["batch"] == ""
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []


def test_the_same_bytes_migrated_again_from_a_copy_are_kept_once(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    write_partitions(tmp_path / "legacy", "run_aaa000000001")
    migrate(cli, tmp_path / "legacy")
    shutil.copytree(tmp_path / "legacy", tmp_path / "copy")
    again = migrate(cli, tmp_path / "copy")
    assert again["counts"]["existing"] == 1
    (run,) = migrated_runs(runs)
    assert len(attachments(runs, run.name)) == 3
    assert len(batches(runs)) == 2  # each migration is recorded, even one that minted no run


def test_a_corrupt_file_is_listed_with_its_digest_and_reported_and_the_rest_is_migrated(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    corrupt = root / DAY / "run_aaa000000002.json"
    corrupt.write_bytes(b'{"run_id": "run_aaa0000')
    result = migrate(cli, root, 1)
    assert {r["legacy_id"]: r["outcome"] for r in result["records"]} == {
        "run_aaa000000001": "created",
        "run_aaa000000002": "error",
    }
    files = {f["path"]: f["sha256"] for f in batch_file(runs, only_batch(runs), "files.json")}
    assert files[f"{DAY}/run_aaa000000002.json"] == sha256(corrupt.read_bytes())


def test_only_a_migrator_may_record_a_batch(runs: RunsClient) -> None:
    request = runs_pb2.CreateRunRequest(run=run_input(mode=MIGRATION_BATCH_MODE))
    with pytest.raises(grpc.RpcError) as raised:
        runs.CreateRun(request, metadata=runs.as_service("art_studio"))
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "LEGACY_MIGRATION_NOT_ALLOWED")
    assert runs.CreateRun(request).mode == MIGRATION_BATCH_MODE  # the operator of the tests is a migrator


# ---- status ---------------------------------------------------------------------------------------------------------


def status_of(cli: Any, source: Path) -> dict[str, Any]:
    return json.loads(cli("migrate", "status", "--from", str(source), "--json").stdout)


def states(result: dict[str, Any]) -> dict[str, str]:
    return {r["legacy_id"] or Path(r["source"]).name: r["state"] for r in result["records"]}


def mixed_store_with_a_corrupt_file(root: Path) -> Path:
    write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    (root / DAY / "run_aaa000000002.json").write_bytes(b"{ not json")
    write_map(root / "runs.json", "run_bbb000000001")
    return root


def test_status_before_a_migration_says_not_yet_and_names_what_would_be_refused_and_writes_nothing(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = mixed_store_with_a_corrupt_file(tmp_path / "legacy")
    result = status_of(cli, root)
    assert states(result) == {
        "run_aaa000000001": "not_migrated",
        "run_aaa000000002": "refused",
        "run_bbb000000001": "not_migrated",
    }
    (refused,) = [r for r in result["records"] if r["state"] == "refused"]
    assert "unreadable JSON" in refused["detail"]
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []


def test_status_after_a_migration_names_each_records_run(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    root = mixed_store_with_a_corrupt_file(tmp_path / "legacy")
    migrated = {r["legacy_id"]: r["run"] for r in migrate(cli, root, 1)["records"] if r["outcome"] == "created"}
    before = len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs)
    result = status_of(cli, root)
    assert {r["legacy_id"]: r["run"] for r in result["records"] if r["state"] == "migrated"} == migrated
    assert result["counts"]["migrated"] == 2 and result["counts"]["refused"] == 1
    assert len(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == before


def test_status_of_a_record_edited_after_its_migration_says_it_changed(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001")
    (line,) = migrate(cli, root)["records"]
    edited = root / DAY / "run_aaa000000001.json"
    edited.write_text(json.dumps({**json.loads(edited.read_text()), "tool_id": "mill-6mm"}))
    (record,) = status_of(cli, root)["records"]
    assert (record["state"], record["run"]) == ("changed", line["run"])
    assert "migrated from other content" in record["detail"]


# ---- verify ---------------------------------------------------------------------------------------------------------


def verify_of(cli: Any, source: Path, expect: int = 0) -> dict[str, Any]:
    return json.loads(cli("migrate", "verify", "--from", str(source), "--json", expect=expect).stdout)


def paths(result: dict[str, Any], severity: str) -> set[str]:
    return {d["path"] for d in result["differences"] if d["severity"] == severity}


@pytest.mark.parametrize("shape", ["partitions", "map"])
def test_a_faithful_migration_verifies_without_a_single_difference(
    cli: Any, runs: RunsClient, tmp_path: Path, shape: str
) -> None:
    root = tmp_path / "legacy"
    if shape == "partitions":
        write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    else:
        write_map(root / "runs.json", "run_bbb000000001", "run_bbb000000002")
    migrate(cli, root)
    result = verify_of(cli, root)
    assert (result["verified"], result["differences"]) == (2, [])


def test_a_record_edited_between_two_migrations_is_reported_critical(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    migrate(cli, root)
    edited = root / DAY / "run_aaa000000002.json"
    edited.write_text(json.dumps({**json.loads(edited.read_text()), "tool_id": "mill-6mm"}))
    assert migrate(cli, root, 1)["counts"]["conflict"] == 1
    result = verify_of(cli, root, 1)
    assert {d["legacy_id"] for d in result["differences"]} == {"run_aaa000000002"}
    assert paths(result, "CRITICAL") == {
        "meta.legacy.artifact_sha256",
        f"legacy_source[{DAY}/run_aaa000000002.json].sha256",
    }
    (tool,) = [d for d in result["differences"] if d["path"] == "tool_id"]
    assert (tool["severity"], tool["legacy"], tool["run_value"]) == ("INFO", '"mill-6mm"', '"router-3mm"')


def test_a_record_that_can_no_longer_be_read_after_its_migration_is_critical(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_map(root / "runs.json", "run_bbb000000001")
    migrate(cli, root)
    day = root / DAY
    day.mkdir()
    (day / "run_bbb000000001.json").write_bytes(b"{ truncated")
    result = verify_of(cli, root, 1)
    assert [(d["legacy_id"], d["path"], d["severity"]) for d in result["differences"]] == [
        ("run_bbb000000001", "record", "CRITICAL")
    ]


def test_a_changed_side_file_and_a_changed_score_are_named_with_their_severities(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001")
    migrate(cli, root)
    side = root / DAY / "run_aaa000000001_explanation.json"
    side.write_text(json.dumps({"explanation_status": "READY", "explanation_summary": "use a smaller tool"}))
    core = root / DAY / "run_aaa000000001.json"
    core.write_text(json.dumps({**json.loads(core.read_text()), "decision": {"risk_level": "low", "score": 0.5}}))
    result = verify_of(cli, root, 1)
    assert {"decision.score", "explanation.summary"} <= paths(result, "WARNING") | paths(result, "INFO")
    assert f"legacy_source[{DAY}/run_aaa000000001_explanation.json].sha256" in paths(result, "CRITICAL")
    (score,) = [d for d in result["differences"] if d["path"] == "decision.score"]
    assert score["severity"] == "WARNING"


def test_records_not_migrated_yet_or_migrated_without_their_source_are_not_critical(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_partitions(root, "run_aaa000000001")
    assert [d["severity"] for d in verify_of(cli, root)["differences"]] == ["WARNING"]
    migrate(cli, root, 0, "--no-keep-source")
    result = verify_of(cli, root)
    assert [(d["path"], d["severity"]) for d in result["differences"]] == [("legacy_source", "INFO")]


# ---- withdrawal and re-migration ------------------------------------------------------------------------------------


def withdraw(cli: Any, batch: str, reason: str, expect: int = 0) -> Any:
    return cli("migrate", "withdraw", batch, "--reason", reason, "--json", expect=expect)


def rpc_error(call: Any) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return status.decode(raised.value)


def migrated_store(cli: Any, root: Path) -> dict[str, Any]:
    write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    return migrate(cli, root)


def every_run(runs: RunsClient) -> list[runs_pb2.Run]:
    return list(runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000, include_withdrawn=True)).runs)


def test_a_withdrawal_is_recorded_on_the_batch_and_every_run_it_created_and_nothing_is_deleted(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    result = migrated_store(cli, tmp_path / "legacy")
    created = sorted(r["run"] for r in result["records"])
    answer = json.loads(withdraw(cli, result["batch"], "mapped risk levels wrongly").stdout)
    assert sorted(answer["runs"]) == created
    assert answer["withdrawal"]["withdrawn_by"]["id"] == "human:operator"
    for name in [result["batch"], *created]:
        run = runs.GetRun(runs_pb2.GetRunRequest(name=name))
        assert (run.withdrawal.batch, run.withdrawal.reason) == (result["batch"], "mapped risk levels wrongly")
        assert run.withdrawal.withdrawn_by.id == "human:operator" and run.withdrawal.withdraw_time.seconds > 0
        assert run.withdrawal.ledger.origin  # each withdrawal has its leaf in the runs ledger
        assert runs.VerifyRun(runs_pb2.VerifyRunRequest(name=name)).ok
    assert len(every_run(runs)) == 3


def test_withdrawn_runs_are_left_out_of_list_runs_unless_asked_for(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    result = migrated_store(cli, tmp_path / "legacy")
    ordinary = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    withdraw(cli, result["batch"], "wrong store")
    listed = runs.ListRuns(runs_pb2.ListRunsRequest())
    assert [r.name for r in listed.runs] == [ordinary.name]
    withdrawn = runs.ListRuns(runs_pb2.ListRunsRequest(only_withdrawn=True)).runs
    assert {r.name for r in withdrawn} == {result["batch"], *(r["run"] for r in result["records"])}
    assert len(every_run(runs)) == 4
    assert json.loads(cli("list", "--json").stdout)[0]["name"] == ordinary.name


def test_a_withdrawn_run_can_never_be_bound(cli: Any, runs: RunsClient, tmp_path: Path, database_url: str) -> None:
    result = migrated_store(cli, tmp_path / "legacy")
    withdraw(cli, result["batch"], "wrong store")
    name = result["records"][0]["run"]
    for strict in (True, False):
        error = rpc_error(
            lambda strict=strict: runs.BindCandidate(runs_pb2.BindCandidateRequest(run=name, strict=strict))
        )
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_WITHDRAWN")
    engine = create_engine(database_url)  # the database refuses the seal a binding would set, whoever writes it
    try:
        seal = {"run_id": name.split("/")[1], "sealed_by": result["batch"].split("/")[1], "scope": "geometry"}
        with pytest.raises(sa.exc.DBAPIError, match="withdrawn"), engine.begin() as connection:
            connection.execute(tables.run_seals.insert().values(**seal, created_at_us=1))
    finally:
        engine.dispose()


def test_a_withdrawal_that_lands_after_the_check_still_refuses_the_bind_as_run_withdrawn(
    cli: Any, runs: RunsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the withdrawal commits between BindCandidate's check and its commit. The check is skipped here to
    stand for that; the database's trigger refuses the seal and the caller still hears RUN_WITHDRAWN."""
    result = migrated_store(cli, tmp_path / "legacy")
    withdraw(cli, result["batch"], "wrong store")
    monkeypatch.setattr(withdrawals, "require_not_withdrawn", lambda context, run_id: None)
    name = result["records"][0]["run"]
    before = len(every_run(runs))
    error = rpc_error(lambda: runs.BindCandidate(runs_pb2.BindCandidateRequest(run=name, strict=False)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_WITHDRAWN")
    assert len(every_run(runs)) == before


def test_repeating_a_withdrawal_returns_it_and_another_reason_is_refused(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    batch = migrated_store(cli, tmp_path / "legacy")["batch"]
    request = runs_pb2.WithdrawMigrationBatchRequest(batch=batch, reason="wrong store")
    first = runs.WithdrawMigrationBatch(request)
    assert runs.WithdrawMigrationBatch(request) == first
    error = rpc_error(
        lambda: runs.WithdrawMigrationBatch(runs_pb2.WithdrawMigrationBatchRequest(batch=batch, reason="x"))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_WITHDRAWN")
    assert error.metadata["reason"] == "wrong store"
    assert runs.GetRun(runs_pb2.GetRunRequest(name=batch)).withdrawal.reason == "wrong store"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 2001])
def test_a_withdrawal_needs_a_reason(cli: Any, runs: RunsClient, tmp_path: Path, reason: str) -> None:
    batch = migrated_store(cli, tmp_path / "legacy")["batch"]
    error = rpc_error(
        lambda: runs.WithdrawMigrationBatch(runs_pb2.WithdrawMigrationBatchRequest(batch=batch, reason=reason))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "WITHDRAWAL_INVALID")
    assert [v.field for v in error.violations] == ["reason"]
    assert not runs.GetRun(runs_pb2.GetRunRequest(name=batch)).HasField("withdrawal")


def test_only_a_batch_is_withdrawn_and_only_by_a_person(runs: RunsClient) -> None:
    ordinary = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    request = runs_pb2.WithdrawMigrationBatchRequest(batch=ordinary.name, reason="not mine")
    error = rpc_error(lambda: runs.WithdrawMigrationBatch(request))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_MIGRATION_BATCH")
    error = rpc_error(lambda: runs.WithdrawMigrationBatch(request, metadata=runs.as_service("art_studio")))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")
    missing = runs_pb2.WithdrawMigrationBatchRequest(batch="runs/run_" + "0" * 32, reason="gone")
    assert rpc_error(lambda: runs.WithdrawMigrationBatch(missing)).reason == "RUN_NOT_FOUND"


def test_an_operator_without_the_migrator_role_may_not_withdraw(
    runs: RunsClient, operator_without_migrator_role: RunsClient
) -> None:
    client = operator_without_migrator_role
    request = runs_pb2.WithdrawMigrationBatchRequest(batch="runs/run_" + "0" * 32, reason="r")
    error = rpc_error(lambda: client.WithdrawMigrationBatch(request))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "WITHDRAWAL_NOT_ALLOWED")


def test_a_batch_that_created_nothing_withdraws_only_itself(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    first = migrated_store(cli, tmp_path / "legacy")
    again = migrate(cli, tmp_path / "legacy")
    answer = json.loads(withdraw(cli, again["batch"], "ran twice").stdout)
    assert answer.get("runs", []) == [] and answer["withdrawal"]["batch"] == again["batch"]
    assert all(not runs.GetRun(runs_pb2.GetRunRequest(name=r["run"])).HasField("withdrawal") for r in first["records"])


def test_a_withdrawal_followed_by_a_re_migration_mints_fresh_runs_that_name_the_withdrawn_ones(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    first = migrated_store(cli, root)
    withdraw(cli, first["batch"], "wrong tool mapping")
    assert set(states(status_of(cli, root)).values()) == {"withdrawn"}
    # The operator fixes a record, then migrates again: fresh runs, even for the edited record (no conflict).
    edited = root / DAY / "run_aaa000000002.json"
    edited.write_text(json.dumps({**json.loads(edited.read_text()), "tool_id": "mill-6mm"}))
    second = migrate(cli, root)
    assert second["counts"]["created"] == 2 and second["counts"]["conflict"] == 0
    old = {r["legacy_id"]: r["run"] for r in first["records"]}
    for line in second["records"]:
        run = runs.GetRun(runs_pb2.GetRunRequest(name=line["run"]))
        assert line["run"] != old[line["legacy_id"]] and not run.HasField("withdrawal")
        assert json_format.MessageToDict(run.meta)["legacy"]["replaces"] == [old[line["legacy_id"]]]
    assert {r["run"] for r in status_of(cli, root)["records"]} == {r["run"] for r in second["records"]}
    assert migrate(cli, root)["counts"]["existing"] == 2  # found again, until it is withdrawn itself
    assert verify_of(cli, root)["differences"] == []


def test_a_second_withdrawal_and_re_migration_replaces_every_withdrawn_run(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    write_map(root / "runs.json", "run_bbb000000001")
    names = []
    for attempt in range(2):
        result = migrate(cli, root)
        names.append(result["records"][0]["run"])
        withdraw(cli, result["batch"], f"attempt {attempt}")
    third = migrate(cli, root)["records"][0]["run"]
    replaces = json_format.MessageToDict(runs.GetRun(runs_pb2.GetRunRequest(name=third)).meta)["legacy"]["replaces"]
    assert replaces == names and third not in names


def test_a_run_may_name_as_replaced_only_withdrawn_runs_of_its_own_record(runs: RunsClient) -> None:
    live = runs.CreateRun(
        runs_pb2.CreateRunRequest(run=run_input(meta=struct({"legacy": {"run_id": "run_x"}})), legacy_migration=True)
    )
    claim = run_input(meta=struct({"legacy": {"run_id": "run_x", "replaces": [live.name, "runs/run_nope"]}}))
    error = rpc_error(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=claim, legacy_migration=True)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LEGACY_REPLACES_INVALID")
    assert [v.field for v in error.violations] == ["run.meta.legacy.replaces[0]", "run.meta.legacy.replaces[1]"]
    malformed = run_input(meta=struct({"legacy": {"run_id": "run_x", "replaces": "runs/a"}}))
    error = rpc_error(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=malformed, legacy_migration=True)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LEGACY_RUN_INVALID")


# ---- the README walkthrough, on the example store -------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy-store"


def test_the_readme_walkthrough_on_the_example_store(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    store = tmp_path / "legacy-store"
    shutil.copytree(EXAMPLE, store)
    dry = migrate(cli, store, 1, "--dry-run")
    assert (dry["counts"]["valid"], dry["counts"]["error"]) == (6, 1)
    assert runs.ListRuns(runs_pb2.ListRunsRequest()).runs == []
    first = migrate(cli, store, 1)
    assert (first["counts"]["created"], first["counts"]["error"]) == (6, 1)
    (warned,) = [r for r in first["records"] if r["warnings"]]
    assert warned["legacy_id"] == "run_e44f00c0ffee"
    assert status_of(cli, store)["counts"] == {
        "migrated": 6,
        "not_migrated": 0,
        "changed": 0,
        "withdrawn": 0,
        "refused": 1,
        "duplicate": 0,
    }
    assert verify_of(cli, store)["counts"]["CRITICAL"] == 0  # the corrupt file was never migrated: a WARNING
    withdraw(cli, first["batch"], "migrated before the tool table was fixed")
    assert status_of(cli, store)["counts"]["withdrawn"] == 6
    second = migrate(cli, store, 1)
    assert second["counts"]["created"] == 6
    assert status_of(cli, store)["counts"]["migrated"] == 6
    assert verify_of(cli, store)["counts"]["CRITICAL"] == 0
