"""The `custody lineage` and `custody pipeline` commands against a real service, and how the service starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.main import app
from services.cli.state import StateLayout, save_endpoints
from services.common.config import ConfigError
from services.common.server import StartupError
from tests.lineage.conftest import Client, create, start_client
from tests.support.harness import ServiceHarness

RECIPE = Path(__file__).resolve().parents[2] / "services" / "cli" / "pipeline" / "recipes" / "recipe-test-echo.yaml"
P = "projects/acme/artifacts"
runner = CliRunner()


@pytest.fixture
def cli(layout: StateLayout, sqlite_url: str) -> Iterator[Client]:
    for client in start_client(layout, sqlite_url):
        save_endpoints(layout, {"lineage": client.harness.address})
        yield client


def custody(layout: StateLayout, *args: str, token: str | None = None) -> tuple[int, str]:
    """The CLI as the operator, or as the holder of `token` (CUSTODY_TOKEN)."""
    env = {} if token is None else {"CUSTODY_TOKEN": token}
    result = runner.invoke(app, [*args[:2], *args[2:], "--state-dir", str(layout.root)], env=env)
    return result.exit_code, result.output


def test_cli_creates_shows_and_approves_a_version(cli: Client, layout: StateLayout) -> None:
    code, out = custody(
        layout,
        "lineage",
        "create",
        f"{P}/intake/brief",
        "--data",
        '{"client": "acme", "objectives": ["grow"]}',
        "--intent",
        "kickoff",
        "--rationale",
        "client call",
        "--json",
    )
    assert code == 0, out
    name = json.loads(out)["version"]["name"]
    code, out = custody(
        layout, "lineage", "approve", name, "--rationale", "matches the call", "--json", token=cli.reviewer_token
    )
    assert code == 0, out
    shown = json.loads(custody(layout, "lineage", "show", name, "--json")[1])
    assert shown["status"]["status"] == "STATUS_APPROVED"
    assert shown["status"]["actor"] == {"id": "human:rita", "kind": "PRINCIPAL_KIND_HUMAN", "roles": ["reviewer"]}


def test_cli_shows_the_creator_of_each_version_in_show_listings_and_closures(cli: Client, layout: StateLayout) -> None:
    brief = create(cli, f"{P}/intake/brief", {"client": "acme", "objectives": ["grow"]}).version.name
    strategy = create(cli, f"{P}/strategy/plan", {"summary": "s"}, [brief]).version.name
    for args in (
        ("lineage", "show", brief),
        ("lineage", "versions", f"{P}/intake/brief"),
        ("lineage", "downstream", brief),
        ("lineage", "upstream", strategy),
    ):
        result = runner.invoke(app, [*args, "--state-dir", str(layout.root)], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        assert "created_by" in result.output and "human:operator (human)" in result.output, (args, result.output)


def test_cli_prints_every_violation_and_exits_1_when_approval_is_refused(cli: Client, layout: StateLayout) -> None:
    code, out = custody(
        layout,
        "lineage",
        "create",
        f"{P}/strategy/s",
        "--data",
        '{"summary": "s"}',
        "--intent",
        "i",
        "--rationale",
        "r",
        "--json",
    )
    name = json.loads(out)["version"]["name"]
    code, out = custody(layout, "lineage", "approve", name, "--rationale", "r")  # as its creator, the operator
    assert code == 1
    assert "FAILED_PRECONDITION SELF_APPROVAL" in out
    assert "created_by: SELF_APPROVAL" in out
    assert "upstream: LINEAGE_INCOMPLETE" in out


def test_cli_queue_lists_what_awaits_a_decision_in_every_project_oldest_first(cli: Client, layout: StateLayout) -> None:
    data = {"client": "acme", "objectives": ["grow"]}
    first = create(cli, f"{P}/intake/a", data).version.name
    decided = create(cli, "projects/beta/artifacts/intake/b", data).version.name
    flagged = create(cli, "projects/beta/artifacts/intake/c", data).version.name
    cli.stub.Approve(pb.ApproveRequest(name=decided, rationale="ok"), metadata=cli.reviewer, timeout=10)
    cli.stub.Flag(pb.FlagRequest(name=flagged, rationale="look"), metadata=cli.reviewer, timeout=10)

    def names(*args: str) -> list[str]:
        code, out = custody(layout, "lineage", *args, "--json")
        assert code == 0, out
        return [v["name"] for v in json.loads(out)]

    assert names("queue", "--page-size", "1") == [first, flagged]
    assert names("queue", "beta") == names("queue", "projects/beta") == [flagged]
    assert names("queue", "--status", "flagged_for_review") == [flagged]
    assert names("versions", "projects/-", "--status", "approved") == [decided]
    assert names("versions", "projects/-") == [first, decided, flagged]
    result = runner.invoke(app, ["lineage", "queue", "--state-dir", str(layout.root)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "awaiting review (2)" in result.output and "FLAGGED_FOR_REVIEW" in result.output


def test_cli_refuses_an_unknown_status_before_calling(cli: Client, layout: StateLayout) -> None:
    code, out = custody(layout, "lineage", "queue", "--status", "pending")
    assert code == 2
    assert "unknown status pending" in out


def test_cli_approve_dry_run_changes_nothing_and_prints_every_violation(cli: Client, layout: StateLayout) -> None:
    brief = create(cli, f"{P}/intake/brief", {"client": "acme", "objectives": ["grow"]}).version.name
    code, out = custody(
        layout,
        "lineage",
        "approve",
        brief,
        "--rationale",
        "r",
        "--dry-run",
        "--request-id",
        "k1",
        token=cli.reviewer_token,
    )
    assert code == 0, out
    assert "the approval would succeed; nothing was changed" in out
    shown = json.loads(custody(layout, "lineage", "show", brief, "--json")[1])
    assert [s["status"] for s in shown["status_history"]] == ["STATUS_DRAFT"]
    code, out = custody(layout, "lineage", "approve", brief, "--rationale", "r", "--dry-run")  # as its creator
    assert code == 1
    assert "FAILED_PRECONDITION SELF_APPROVAL" in out and "created_by: SELF_APPROVAL" in out
    code, out = custody(
        layout,
        "lineage",
        "approve",
        brief,
        "--rationale",
        "r",
        "--request-id",
        "k1",
        "--json",
        token=cli.reviewer_token,
    )
    assert code == 0, out
    assert json.loads(out)["status"]["status"] == "STATUS_APPROVED"


def test_cli_plan_shows_job_dependencies(cli: Client, layout: StateLayout) -> None:
    code, out = custody(layout, "lineage", "plan", "marketing", "campaign_strategy", "ig_posts", "--json")
    assert code == 0, out
    jobs = {j["id"]: j.get("depends_on", []) for j in json.loads(out)["jobs"]}
    assert jobs["execution:ig_posts"] == ["strategy:campaign_strategy"]


def test_cli_pipeline_run_writes_run_state(cli: Client, layout: StateLayout, tmp_path: Path) -> None:
    code, out = custody(
        layout, "pipeline", "run", str(RECIPE), "--run-id", "cli-1", "--output-dir", str(tmp_path), "--json"
    )
    assert code == 0, out
    assert json.loads((tmp_path / "cli-1" / "run_state.json").read_text())["status"] == "succeeded"
    code, out = custody(
        layout, "lineage", "downstream", "projects/demo/artifacts/echo_record/greet/versions/1", "--json"
    )
    assert len(json.loads(out)["nodes"]) == 3


def test_cli_pipeline_run_exits_2_listing_every_recipe_problem(layout: StateLayout, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe_id: bad\nstages:\n  - {id: a, module: nosuch}\n  - {id: b, module: echo_v1, needs: [x]}\n")
    code, out = custody(layout, "pipeline", "run", str(bad), "--run-id", "r1", "--output-dir", str(tmp_path))
    assert code == 2
    assert "unknown module 'nosuch'" in out and "needs unknown stage 'x'" in out


def test_cli_pipeline_dry_run_needs_no_writes(cli: Client, layout: StateLayout, tmp_path: Path) -> None:
    code, out = custody(
        layout, "pipeline", "run", str(RECIPE), "--run-id", "dry", "--dry-run", "--output-dir", str(tmp_path), "--json"
    )
    assert code == 0, out
    assert [s["status"] for s in json.loads(out)["stages"]] == ["planned"] * 4
    assert not (tmp_path / "dry").exists()


# ---- start-up -----------------------------------------------------------------------------------------------------


def test_an_invalid_policy_stops_the_service_before_it_listens(
    layout: StateLayout, sqlite_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.yaml").write_text(
        "policy: broken\ntypes:\n  a: {schema_version: '1', schema: {type: object}, requires: [missing]}\n"
    )
    harness = ServiceHarness("lineage", layout, settings={"database_url": sqlite_url, "policies_dir": str(policies)})
    with pytest.raises(ConfigError, match=r"broken.yaml.*unknown type 'missing'"):
        harness.__enter__()
    harness.__exit__(None, None, None)


def test_a_policy_that_changed_a_registered_schema_version_stops_the_start(
    layout: StateLayout, sqlite_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text("policy: p\ntypes:\n  a: {schema_version: '1', schema: {type: object}}\n")
    with ServiceHarness("lineage", layout, settings={"database_url": sqlite_url, "policies_dir": str(policies)}):
        pass
    (policies / "p.yaml").write_text("policy: p\ntypes:\n  a: {schema_version: '1', schema: {type: array}}\n")
    harness = ServiceHarness("lineage", layout, settings={"database_url": sqlite_url, "policies_dir": str(policies)})
    with pytest.raises(StartupError, match=r"TYPE_VERSION_EXISTS|registered with a different definition"):
        harness.__enter__()
    harness.__exit__(None, None, None)


def test_a_second_replica_with_unchanged_policies_starts(cli: Client, layout: StateLayout, sqlite_url: str) -> None:
    with ServiceHarness("lineage", layout, settings={"database_url": sqlite_url}) as again:
        channel = again.channel()
        grpc.channel_ready_future(channel).result(timeout=5)


def test_serve_exits_2_naming_the_invalid_policy(
    layout: StateLayout,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    from services.common.server import run
    from services.lineage.config import LineageSettings
    from services.lineage.main import build

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)  # run() configures process logging; give the next tests theirs back

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "typo.yaml").write_text(
        "policy: typo\ntypes:\n  a: {schema_version: '1', schema: {type: object}, requires: [confnote]}\n"
    )
    for key, value in {
        "STATE_DIR": str(layout.root),
        "PORT": "0",
        "DATABASE_URL": sqlite_url,
        "POLICIES_DIR": str(policies),
    }.items():
        monkeypatch.setenv(f"CUSTODY_LINEAGE_{key}", value)
    try:
        code = run(LineageSettings, build, layout.service_config("lineage"))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert code == 2
    error = capsys.readouterr().err
    assert "typo.yaml" in error and "unknown type 'confnote'" in error
