"""How `custody` reports a refused call, as a person or a script sees it: the server's message literally, a hint
that names a command or variable that exists, and with --json one JSON object on stderr."""

from __future__ import annotations

import json
from typing import Any

from custody.runs.v1 import runs_pb2
from tests.runs.conftest import RunsClient, run_input
from tests.support.processes import clean_environment, custody

BRACKETED = "runs/[red]not-a-run[/red]"


def test_a_message_with_square_brackets_is_printed_literally(cli: Any) -> None:
    result = cli("show", BRACKETED, expect=1)
    assert "Traceback" not in result.stderr
    assert "INVALID_ARGUMENT" in result.stderr and "[red]not-a-run[/red]" in result.stderr


def test_with_json_an_error_is_one_json_object_on_stderr(cli: Any) -> None:
    result = cli("show", BRACKETED, "--json", expect=1)
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["reason"]
    assert "[red]not-a-run[/red]" in error["message"]


def test_a_candidate_without_its_files_hints_at_the_lenient_flag(cli: Any, runs: RunsClient) -> None:
    created = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")))
    result = cli("bind", created.name, expect=1)
    assert "CANDIDATE_INCOMPLETE" in result.stderr
    assert "custody runs bind RUN --lenient" in result.stderr and "strict=false" not in result.stderr.split("hint:")[1]


def test_a_token_refused_while_custody_token_is_set_names_the_variable(runs: RunsClient, cli: Any) -> None:
    env = clean_environment(CUSTODY_TOKEN="not-a-token-of-this-deployment")
    result = custody("runs", "list", "--state-dir", str(runs.layout.root), env=env)
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr and "CUSTODY_TOKEN is set" in result.stderr


def test_piped_output_is_not_wrapped_at_80_columns(cli: Any, runs: RunsClient) -> None:
    note = "n" * 200
    created = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(outputs={"gcode": note})))
    lines = cli("show", created.name).stdout.splitlines()
    assert any(note in line for line in lines)
