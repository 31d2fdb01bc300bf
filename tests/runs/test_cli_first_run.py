"""A run of your own from the command line, without the demo: create it (flags or a JSON/YAML file), attach,
list and show what it holds, download an attachment to a file or stdout, checked against its digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from custody.runs.v1 import runs_pb2
from services.common.hashing import sha256_canonical
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import RunsClient


def created(cli: Any, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(cli("create", *args, "--json").stdout)
    return document


def test_create_mints_a_run_from_flags(cli: Any, runs: RunsClient) -> None:
    run = created(
        cli,
        "--mode",
        "design_session",
        "--tool",
        "router-0.5mm",
        "--feasibility",
        '{"passed": true}',
        "--output",
        "gcode=pending",
    )
    stored = runs.GetRun(runs_pb2.GetRunRequest(name=run["name"]))
    assert (stored.mode, stored.tool_id) == ("design_session", "router-0.5mm")
    assert dict(stored.outputs) == {"gcode": "pending"}
    assert stored.hashes.feasibility_sha256 == sha256_canonical({"passed": True})
    assert stored.status == runs_pb2.RUN_STATUS_OK and stored.decision.risk_level == runs_pb2.RISK_LEVEL_GREEN


def test_create_mints_a_run_from_a_yaml_file_with_flags_overriding(cli: Any, runs: RunsClient, tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "mode": "cnc_rosette",
                "tool_id": "router-1mm",
                "status": "RUN_STATUS_BLOCKED",
                "decision": {"risk_level": "RISK_LEVEL_RED", "score": 0.1, "block_reason": "thin wall"},
                "feasibility": {"checks": ["wall"], "passed": False},
            }
        )
    )
    run = created(cli, "--file", str(file), "--tool", "router-2mm")
    stored = runs.GetRun(runs_pb2.GetRunRequest(name=run["name"]))
    assert (stored.tool_id, stored.status, stored.decision.block_reason) == (
        "router-2mm",
        runs_pb2.RUN_STATUS_BLOCKED,
        "thin wall",
    )
    assert abs(stored.decision.score - 0.1) < 1e-9


def test_create_with_the_same_request_id_returns_the_same_run(cli: Any) -> None:
    args = ("--mode", "design_session", "--tool", "t1", "--request-id", "my-first-run")
    assert created(cli, *args)["name"] == created(cli, *args)["name"]


def test_a_file_with_a_field_runs_do_not_have_is_refused_and_nothing_is_minted(
    cli: Any, runs: RunsClient, tmp_path: Path
) -> None:
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"mode": "design_session", "colour": "red"}))
    result = cli("create", "--file", str(file), expect=2)
    assert "colour" in result.stderr
    assert list(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == []


def test_a_run_the_service_refuses_names_the_reason_and_nothing_is_minted(cli: Any, runs: RunsClient) -> None:
    result = cli("create", "--mode", "design_session", "--status", "BLOCKED", expect=1)
    assert "--tool" in result.stderr  # the hint names the flag of each field
    assert "INVALID_ARGUMENT" in result.stderr
    assert list(runs.ListRuns(runs_pb2.ListRunsRequest()).runs) == []


def attached(cli: Any, tmp_path: Path) -> tuple[str, str]:
    run = created(cli, "--mode", "design_session", "--tool", "t1")["name"]
    svg = tmp_path / "candidate.svg"
    svg.write_bytes(CLEAN_SVG)
    attachment = json.loads(cli("attach", run, str(svg), "--kind", "geometry_svg", "--json").stdout)["name"]
    return run, attachment


def test_attachments_lists_kind_file_size_digest_and_creator(cli: Any, tmp_path: Path) -> None:
    run, attachment = attached(cli, tmp_path)
    (row,) = json.loads(cli("attachments", run, "--json").stdout)
    assert (row["name"], row["kind"], row["filename"]) == (attachment, "geometry_svg", "candidate.svg")
    assert row["digest"]["sha256"] == hashlib.sha256(CLEAN_SVG).hexdigest()
    assert row["created_by"]["id"] == "human:operator"
    table = cli("attachments", run).stdout
    assert attachment in table and hashlib.sha256(CLEAN_SVG).hexdigest() in table


def test_show_includes_the_attachments(cli: Any, tmp_path: Path) -> None:
    run, attachment = attached(cli, tmp_path)
    shown = json.loads(cli("show", run, "--json").stdout)
    assert [a["name"] for a in shown["attachments"]] == [attachment]
    assert attachment in cli("show", run).stdout


def test_download_to_stdout_gives_exactly_the_attached_bytes(cli: Any, tmp_path: Path) -> None:
    _, attachment = attached(cli, tmp_path)
    assert cli("download", attachment, "-o", "-").stdout.encode() == CLEAN_SVG


def test_download_to_a_file_writes_the_bytes_whose_digest_it_prints(cli: Any, tmp_path: Path) -> None:
    _, attachment = attached(cli, tmp_path)
    target = tmp_path / "approved.svg"
    printed = cli("download", attachment, "-o", str(target)).stdout
    assert target.read_bytes() == CLEAN_SVG and hashlib.sha256(CLEAN_SVG).hexdigest() in printed


def test_the_readme_first_run_binds_and_names_the_svg_it_bound(cli: Any, tmp_path: Path) -> None:
    run, _ = attached(cli, tmp_path)
    spec = tmp_path / "mine.json"
    spec.write_bytes(CLEAN_SPEC)
    cli("attach", run, str(spec), "--kind", "geometry_spec_json")
    bound = json.loads(cli("bind", run, "--json").stdout)
    assert bound["decision"] == "FEASIBILITY_DECISION_ALLOW"
    (svg,) = json.loads(cli("attachments", bound["run"]["name"], "--kind", "geometry_svg", "--json").stdout)
    cli("download", svg["name"], "-o", str(tmp_path / "approved.svg"))
    assert (tmp_path / "approved.svg").read_bytes() == CLEAN_SVG
    assert "0 with problems" in cli("verify", bound["run"]["name"]).stdout
