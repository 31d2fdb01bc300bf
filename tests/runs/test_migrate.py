"""What `custody runs migrate` guarantees, run for real against a runs service over gRPC: both legacy layouts (and
both together) are read; a store migrated again, from wherever it was copied, is reported as already migrated
and mints nothing; the same legacy id with other content is a conflict; a record the legacy schema allowed but
Custody's later rules do not is imported as it was, with its warnings on the report line and in the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.run_rules import MIGRATION_BATCH_MODE
from tests.runs.conftest import RunsClient, run_input, struct
from tests.runs.test_cli import report
from tests.support.legacy import legacy_artifact

ERROR_WITH_BLOCK_REASON = {"status": "ERROR", "decision": {"risk_level": "ERROR", "score": 0.0, "block_reason": "x"}}


def write_partitions(root: Path, *ids: str, **overrides: Any) -> None:
    day = root / "2025-12-17"
    day.mkdir(parents=True, exist_ok=True)
    for legacy_id in ids:
        (day / f"{legacy_id}.json").write_text(json.dumps(legacy_artifact(legacy_id, **overrides)))
    if ids:
        (day / f"{ids[0]}_advisory_adv_001.json").write_text(
            json.dumps({"advisory_id": "adv_001", "kind": "explanation", "engine_id": "e", "engine_version": "1"})
        )
        (day / f"{ids[0]}_explanation.json").write_text(
            json.dumps({"explanation_status": "READY", "explanation_summary": "clamp the blank"})
        )


def write_map(path: Path, *ids: str, **overrides: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({legacy_id: legacy_artifact(legacy_id, **overrides) for legacy_id in ids}))


def partitions(root: Path) -> Path:
    write_partitions(root, "run_aaa000000001", "run_aaa000000002")
    return root


def map_directory(root: Path) -> Path:
    write_map(root / "runs.json", "run_bbb000000001", "run_bbb000000002")
    return root


def map_file(root: Path) -> Path:
    write_map(root / "store" / "runs.json", "run_bbb000000001", "run_bbb000000002")
    return root / "store" / "runs.json"


def mixed(root: Path) -> Path:
    write_partitions(root, "run_aaa000000001")
    write_map(root / "runs.json", "run_bbb000000001")
    return root


LAYOUTS = {"partitions": partitions, "runs.json in a directory": map_directory, "map file": map_file, "both": mixed}


def migrate(cli: Any, source: Path, expect: int = 0, *extra: str) -> dict[str, Any]:
    return report(cli("migrate", "--from", str(source), "--json", *extra, expect=expect))


def migrated_runs(runs: RunsClient) -> list[runs_pb2.Run]:
    """The runs migrated from legacy records (not the batch runs recording each migration)."""
    every = runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    return [r for r in every if r.mode != MIGRATION_BATCH_MODE]


def batches(runs: RunsClient) -> list[runs_pb2.Run]:
    return list(runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000, mode=MIGRATION_BATCH_MODE)).runs)


def run_count(runs: RunsClient) -> int:
    return len(migrated_runs(runs))


def legacy_meta(run: runs_pb2.Run) -> dict[str, Any]:
    return json_format.MessageToDict(run.meta)["legacy"]


def by_legacy_id(runs: RunsClient) -> dict[str, runs_pb2.Run]:
    return {legacy_meta(r)["run_id"]: r for r in migrated_runs(runs)}


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_each_layout_is_migrated_with_every_record_created(
    cli: Any, runs: RunsClient, tmp_path: Path, layout_name: str
) -> None:
    source = LAYOUTS[layout_name](tmp_path / "legacy")
    first = migrate(cli, source)
    assert first["counts"]["created"] == 2 == run_count(runs)
    assert first["counts"]["error"] == 0


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_a_copy_of_a_migrated_store_is_reported_as_already_migrated_and_mints_nothing(
    cli: Any, runs: RunsClient, tmp_path: Path, layout_name: str
) -> None:
    source = LAYOUTS[layout_name](tmp_path / "legacy")
    first = migrate(cli, source)
    names = {r["legacy_id"]: r["run"] for r in first["records"]}
    moved_root = tmp_path / "moved" / "elsewhere"
    shutil.copytree(tmp_path / "legacy", moved_root)
    moved = moved_root / source.relative_to(tmp_path / "legacy")
    again = migrate(cli, moved)
    assert again["counts"] == {**{k: 0 for k in again["counts"]}, "existing": 2}
    assert {r["legacy_id"]: r["run"] for r in again["records"]} == names
    assert all(str(moved_root) in r["source"] for r in again["records"])
    assert run_count(runs) == 2


def test_where_a_record_was_read_from_is_reported_but_not_part_of_the_run(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    migrate(cli, partitions(tmp_path / "legacy"))
    for run in by_legacy_id(runs).values():
        assert str(tmp_path) not in json.dumps(json_format.MessageToDict(run))


def test_a_record_found_in_both_layouts_with_the_same_content_is_migrated_once(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    day = root / "2025-12-17"
    day.mkdir(parents=True)
    (day / "run_ccc000000001.json").write_text(json.dumps(legacy_artifact("run_ccc000000001")))
    write_map(root / "runs.json", "run_ccc000000001")
    result = migrate(cli, root)
    assert (result["counts"]["created"], result["counts"]["duplicate"], result["counts"]["error"]) == (1, 1, 0)
    assert run_count(runs) == 1


def test_the_same_legacy_id_with_other_content_in_one_store_is_a_conflict_and_nothing_is_minted(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    root = tmp_path / "legacy"
    day = root / "2025-12-17"
    day.mkdir(parents=True)
    (day / "run_ccc000000001.json").write_text(json.dumps(legacy_artifact("run_ccc000000001", tool_id="mill-6mm")))
    write_map(root / "runs.json", "run_ccc000000001", "run_ccc000000002")
    result = migrate(cli, root, 1)
    conflicts = [r for r in result["records"] if r["outcome"] == "conflict"]
    assert {Path(r["source"].split("#")[0]).name for r in conflicts} == {"runs.json", "run_ccc000000001.json"}
    assert all("different content" in r["detail"] and r["legacy_id"] == "run_ccc000000001" for r in conflicts)
    assert (result["counts"]["created"], result["counts"]["error"]) == (1, 0)
    assert set(by_legacy_id(runs)) == {"run_ccc000000002"}


def test_a_legacy_id_migrated_before_and_found_again_with_other_content_is_a_conflict(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    migrate(cli, partitions(tmp_path / "legacy"))
    before = by_legacy_id(runs)
    changed = tmp_path / "changed"
    write_partitions(changed, "run_aaa000000001", "run_aaa000000002")
    record = changed / "2025-12-17" / "run_aaa000000002.json"
    record.write_text(json.dumps(legacy_artifact("run_aaa000000002", tool_id="mill-6mm")))
    result = migrate(cli, changed, 1)
    outcomes = {r["legacy_id"]: r["outcome"] for r in result["records"]}
    assert outcomes == {"run_aaa000000001": "existing", "run_aaa000000002": "conflict"}
    (conflict,) = [r for r in result["records"] if r["outcome"] == "conflict"]
    assert "already migrated from a record with different content" in conflict["detail"]
    assert result["counts"]["error"] == 0
    assert by_legacy_id(runs) == before  # the first migration's run is kept as it was


@pytest.mark.parametrize(
    ("overrides", "warned_field"),
    [
        (ERROR_WITH_BLOCK_REASON, "run.decision.block_reason"),
        ({"status": "BLOCKED", "decision": {"risk_level": "RED", "score": 0.1}}, "run.decision.block_reason"),
        ({"status": "OK", "decision": {"risk_level": "ERROR", "score": 0.5}}, "run.decision.risk_level"),
        ({"decision": {"risk_level": "GREEN", "score": 87}}, "run.decision.score"),
    ],
)
def test_a_record_breaking_only_a_later_custody_rule_is_imported_as_it_was_with_a_warning(
    cli: Any, runs: RunsClient, tmp_path: Path, overrides: dict[str, Any], warned_field: str
) -> None:
    root = tmp_path / "legacy"
    write_map(root / "runs.json", "run_ddd000000001", **overrides)
    dry = migrate(cli, root, 0, "--dry-run")
    result = migrate(cli, root)
    (line,) = result["records"]
    assert line["outcome"] == "created"
    assert [w.split(":")[0] for w in line["warnings"]] == [warned_field]
    assert dry["records"][0]["warnings"] == line["warnings"]
    run = runs.GetRun(runs_pb2.GetRunRequest(name=line["run"]))
    assert legacy_meta(run)["migration_warnings"] == line["warnings"]
    decision = overrides["decision"]
    assert run.decision.block_reason == decision.get("block_reason", "")
    assert run.decision.score == decision["score"]
    assert runs_pb2.RunStatus.Name(run.status) == f"RUN_STATUS_{overrides.get('status', 'OK')}"
    assert runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name)).ok


def test_a_record_without_warnings_records_an_empty_list(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    result = migrate(cli, map_directory(tmp_path / "legacy"))
    assert all(line["warnings"] == [] for line in result["records"])
    assert all(legacy_meta(run)["migration_warnings"] == [] for run in by_legacy_id(runs).values())


def test_legacy_rules_still_refuse_what_the_legacy_schema_refused(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    root = tmp_path / "legacy"
    write_map(root / "runs.json", "run_eee000000001", hashes={"feasibility_sha256": ""}, **ERROR_WITH_BLOCK_REASON)
    (line,) = migrate(cli, root, 1)["records"]
    assert line["outcome"] == "error" and "run.hashes.feasibility_sha256" in line["detail"]
    assert run_count(runs) == 0


def test_long_legacy_ids_sharing_a_prefix_are_not_mistaken_for_each_other(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    prefix = "run_" + "a" * 140
    write_map(tmp_path / "runs.json", prefix + "1", prefix + "2")
    result = migrate(cli, tmp_path / "runs.json")
    assert result["counts"]["created"] == 2 and run_count(runs) == 2


def test_a_migrated_run_with_warnings_survives_export_and_import(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    write_map(tmp_path / "legacy" / "runs.json", "run_fff000000001", **ERROR_WITH_BLOCK_REASON)
    migrate(cli, tmp_path / "legacy")
    cli("export", str(tmp_path / "backup"))
    cli("import", str(tmp_path / "backup"))
    imported = [r for r in migrated_runs(runs) if "imported" in r.meta]
    assert len(imported) == 1 and imported[0].decision.block_reason == "x"


# ---- the legacy_migration path of CreateRun, called directly ----------------------------------------------------


def legacy_input(**meta: Any) -> runs_pb2.RunInput:
    """An ERROR run with a block reason: refused by Custody's rules, allowed by the legacy schema."""
    return run_input(
        status=runs_pb2.RUN_STATUS_ERROR,
        decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_ERROR, score=0.0, block_reason="spindle stall"),
        meta=struct({"legacy": {"run_id": "run_abc"}, **meta}),
    )


def rpc_error(call: Any) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return status.decode(raised.value)


def test_an_ordinary_create_run_still_refuses_a_later_rule(runs: RunsClient) -> None:
    error = rpc_error(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=legacy_input())))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RUN_INVALID")
    assert [v.field for v in error.violations] == ["run.decision.block_reason"]


def test_a_service_may_not_use_the_legacy_migration_path(runs: RunsClient) -> None:
    request = runs_pb2.CreateRunRequest(run=legacy_input(), legacy_migration=True)
    error = rpc_error(lambda: runs.CreateRun(request, metadata=runs.as_service("art_studio")))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "LEGACY_MIGRATION_NOT_ALLOWED")
    assert run_count(runs) == 0


def test_an_operator_without_the_migrator_role_may_not_use_the_legacy_migration_path(
    operator_without_migrator_role: RunsClient,
) -> None:
    client = operator_without_migrator_role
    error = rpc_error(lambda: client.CreateRun(runs_pb2.CreateRunRequest(run=legacy_input(), legacy_migration=True)))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "LEGACY_MIGRATION_NOT_ALLOWED")
    assert client.CreateRun(runs_pb2.CreateRunRequest(run=run_input())).name  # ordinary runs are still fine


def test_the_legacy_migration_path_needs_the_legacy_id(runs: RunsClient) -> None:
    bare = run_input(status=runs_pb2.RUN_STATUS_OK)
    error = rpc_error(lambda: runs.CreateRun(runs_pb2.CreateRunRequest(run=bare, legacy_migration=True)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LEGACY_RUN_INVALID")
    assert [v.field for v in error.violations] == ["run.meta.legacy.run_id"]


def test_the_server_records_its_own_warnings_not_the_callers(runs: RunsClient) -> None:
    run = legacy_input()
    run.meta["legacy"]["migration_warnings"] = []  # claims a clean record
    created = runs.CreateRun(runs_pb2.CreateRunRequest(run=run, legacy_migration=True))
    assert [w.split(":")[0] for w in legacy_meta(created)["migration_warnings"]] == ["run.decision.block_reason"]


def test_the_same_request_id_with_and_without_legacy_migration_is_a_conflict(runs: RunsClient) -> None:
    ordinary = run_input(meta=struct({"legacy": {"run_id": "run_abc"}}))
    runs.CreateRun(runs_pb2.CreateRunRequest(run=ordinary, request_id="legacy-run_abc"))
    migrated = runs_pb2.CreateRunRequest(run=ordinary, request_id="legacy-run_abc", legacy_migration=True)
    error = rpc_error(lambda: runs.CreateRun(migrated))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
