"""`custody evidence verify DIR`: trusts the state directory's keys by default, prints each failure, exits 1 on
any and 0 when all of it holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.state import StateLayout
from services.common.evidence import bundle
from services.common.evidence.keys import EvidenceSigner
from tests.unit.evidence.ledgers import World, write_run_bundle


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def layout(tmp_path: Path, world: World) -> StateLayout:
    """A state directory holding the public keys `custody init` writes: the evidence key and each ledger's."""
    layout = StateLayout(tmp_path / "var")
    layout.evidence_public_key.parent.mkdir(parents=True)
    layout.evidence_public_key.write_text(world.signer.public_key.pem)
    for ledger in (world.runs, world.lineage, world.gateway):
        layout.ledger_verifier_key(ledger.service).write_text(ledger.vkey + "\n")
    return layout


@pytest.fixture
def directory(tmp_path: Path, world: World) -> Path:
    write_run_bundle(tmp_path / "bundle", world)
    return tmp_path / "bundle"


def _verify(layout: StateLayout, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evidence", "verify", *args, "--state-dir", str(layout.root)])
    return result.exit_code, result.output


def test_a_sound_bundle_verifies_with_the_state_directorys_keys(layout: StateLayout, directory: Path) -> None:
    code, output = _verify(layout, str(directory))
    assert code == 0, output
    assert "verified" in output and "5 ledger record(s)" in output and "3 subject file(s)" in output


def test_a_tampered_bundle_exits_1_naming_each_failure(layout: StateLayout, directory: Path) -> None:
    ledger = json.loads((directory / bundle.LEDGER_FILE).read_text())
    ledger["records"][0]["leaf"] = ledger["records"][0]["leaf"].replace("req-1", "req-2")
    (directory / bundle.LEDGER_FILE).write_text(json.dumps(ledger))
    code, output = _verify(layout, str(directory))
    assert code == 1
    assert "FAILED ledger.json records[0] (runs run runs/r1): ledger.inclusion" in output
    assert "FAILED statement.dsse.json subject[0]: ledger.claim" in output  # the leaf now names another request
    assert "does not verify: 2 failure(s)" in output


def test_flags_override_the_default_keys(layout: StateLayout, directory: Path, world: World, tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_text(EvidenceSigner.generate().public_key.pem)
    code, output = _verify(layout, str(directory), "--key", str(other))
    assert code == 1 and "dsse.signature" in output
    vkey_file = tmp_path / "runs.vkey"
    vkey_file.write_text(world.runs.vkey)
    code, output = _verify(layout, str(directory), "--ledger-key", str(vkey_file), "--ledger-key", world.lineage.vkey)
    assert code == 1
    assert "ledger.json records[4] (ai_gateway call calls/c1): ledger.untrusted_origin" in output
    assert "records[3]" not in output  # lineage's key, given as text, is trusted


def test_json_output_lists_the_failures(layout: StateLayout, directory: Path) -> None:
    (directory / bundle.SUBJECTS_DIR / next(iter(bundle.read_subject_files(directory)))).write_bytes(b"x")
    code, output = _verify(layout, str(directory), "--json")
    assert code == 1
    report = json.loads(output)
    assert report["verified"] is False
    assert [f["check"] for f in report["failures"]] == ["subject.digest"]


def test_without_trusted_keys_it_says_where_they_were_expected(tmp_path: Path, directory: Path) -> None:
    code, output = _verify(StateLayout(tmp_path / "empty"), str(directory))
    assert code == 2
    assert "no evidence public key at" in output and "custody init" in output
