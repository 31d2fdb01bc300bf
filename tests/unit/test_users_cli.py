"""`custody users`: the token alone on stdout, once; what it is and how to use it on stderr; the list as a table
or JSON; refusals as a message and exit 1, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.state import StateLayout, initialize
from services.common.errors import Unauthenticated
from services.common.identity import Credentials

runner = CliRunner()


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    return layout


def users(layout: StateLayout, *args: str) -> Result:
    return runner.invoke(app, ["users", *args, "--state-dir", str(layout.root)])


def who(layout: StateLayout, token: str) -> str:
    return Credentials.load(layout.credentials).authenticate(f"Bearer {token}").id


def test_add_prints_only_the_token_on_stdout_and_how_to_use_it_on_stderr(layout: StateLayout) -> None:
    result = users(layout, "add", "alice", "--role", "reviewer")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert who(layout, token) == "human:alice"
    assert token not in result.stderr
    assert "CUSTODY_TOKEN" in result.stderr and "shown this once" in result.stderr


def test_add_takes_the_role_option_repeatedly(layout: StateLayout) -> None:
    result = users(layout, "add", "olga", "--role", "operator", "--role", "migrator")
    assert result.exit_code == 0, result.output
    assert Credentials.load(layout.credentials).authenticate(f"Bearer {result.stdout.strip()}").roles == {
        "operator",
        "migrator",
    }


def test_rotate_prints_a_new_token_and_the_old_one_stops_working(layout: StateLayout) -> None:
    old = users(layout, "add", "alice", "--role", "reviewer").stdout.strip()
    result = users(layout, "rotate", "alice")
    assert result.exit_code == 0, result.output
    assert who(layout, result.stdout.strip()) == "human:alice"
    with pytest.raises(Unauthenticated):
        who(layout, old)


def test_list_json_has_one_record_per_person_with_state_and_the_bootstrap_marked(layout: StateLayout) -> None:
    users(layout, "add", "alice", "--role", "reviewer")
    users(layout, "add", "bob", "--role", "operator")
    assert users(layout, "revoke", "bob").exit_code == 0
    result = users(layout, "list", "--json")
    assert result.exit_code == 0, result.output
    people = {p["name"]: p for p in json.loads(result.stdout)}
    assert set(people) == {"operator", "alice", "bob"}
    assert people["operator"]["bootstrap"] is True and people["alice"]["bootstrap"] is False
    assert people["alice"] | {"created_at": None} == {
        "name": "alice",
        "principal": "human:alice",
        "roles": ["reviewer"],
        "created_at": None,
        "rotated_at": None,
        "revoked_at": None,
        "state": "active",
        "bootstrap": False,
    }
    assert people["bob"]["state"] == "revoked" and people["bob"]["revoked_at"]


def test_list_names_the_bootstrap_operator_and_hints_to_retire_it(layout: StateLayout) -> None:
    result = users(layout, "list")
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("│ operator ")]
    assert "bootstrap" in row and "active" in row
    assert "custody users revoke operator" in result.stdout


def test_list_stops_hinting_once_the_bootstrap_operator_is_revoked(layout: StateLayout) -> None:
    assert users(layout, "revoke", "operator").exit_code == 0
    result = users(layout, "list")
    assert result.exit_code == 0, result.output
    assert "custody users revoke operator" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "runs", "--role", "reviewer"], "is a Custody service"),
        (["revoke", "lineage"], "is a Custody service"),
        (["add", "Alice", "--role", "reviewer"], "not a person's name"),
        (["add", "alice", "--role", "boss"], "unknown role boss"),
        (["rotate", "nobody"], "no person named"),
    ],
)
def test_refusals_exit_1_with_the_reason_and_write_nothing(layout: StateLayout, args: list[str], message: str) -> None:
    before = layout.credentials.read_bytes()
    result = users(layout, *args)
    assert result.exit_code == 1
    assert "error:" in result.stderr and message in " ".join(result.stderr.split())
    assert result.stdout == ""
    assert layout.credentials.read_bytes() == before


def test_re_adding_a_revoked_name_explains_that_names_are_never_reused(layout: StateLayout) -> None:
    users(layout, "add", "alice", "--role", "reviewer")
    users(layout, "revoke", "alice")
    result = users(layout, "add", "alice", "--role", "reviewer")
    assert result.exit_code == 1
    assert "never reused" in " ".join(result.stderr.split())


def test_init_force_on_an_unreadable_credentials_file_refuses_and_keeps_it(layout: StateLayout) -> None:
    layout.credentials.write_text("{broken")
    result = runner.invoke(app, ["init", "--force", "--state-dir", str(layout.root)])
    assert result.exit_code == 1
    assert "not JSON" in result.stderr
    assert layout.credentials.read_text() == "{broken"
