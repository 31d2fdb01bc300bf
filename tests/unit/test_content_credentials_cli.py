"""`custody evidence c2pa FILE`: an offline check a downstream consumer runs on an asset Custody produced; exit 0
only when trusted, 1 naming every problem, 2 when the file is not an image it can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli.content_ca import ensure_content_credentials
from services.common.content_credentials import CredentialSigner
from services.common.content_credentials.layout import signer_directory
from tests.support.processes import clean_environment, custody
from tests.unit.test_content_credentials import SVG, credentials_for


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("state")
    ensure_content_credentials(root)
    return root


@pytest.fixture(scope="module")
def signed(state: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("assets") / "candidate-0.svg"
    signer = CredentialSigner.from_directory(signer_directory(state, "runs"))
    path.write_bytes(signer.sign(SVG, "image/svg+xml", credentials_for(SVG)))
    return path


def check(state: Path, *args: str) -> tuple[int, str, str]:
    result = custody("evidence", "c2pa", *args, "--state-dir", str(state), env=clean_environment())
    return result.returncode, result.stdout, result.stderr


def test_a_trusted_asset_prints_the_chain_of_custody_it_names(state: Path, signed: Path) -> None:
    code, out, _ = check(state, str(signed))
    assert code == 0, out
    assert out.startswith(f"trusted: {signed}")
    claim = credentials_for(SVG).assertion
    for value in (claim.run, claim.attachment, claim.unsigned_sha256, claim.ai_call, "leaf 42"):
        assert value in out
    assert "trainedAlgorithmicMedia" in out and "local/local-image-1" in out


def test_json_output_carries_the_report(state: Path, signed: Path) -> None:
    code, out, _ = check(state, str(signed), "--json")
    report = json.loads(out)
    assert code == 0 and report["trusted"] and report["assertion"]["ai_request_id"] == "req-9"


def test_a_modified_asset_exits_1_naming_the_problem(state: Path, signed: Path, tmp_path: Path) -> None:
    modified = tmp_path / "modified.svg"
    modified.write_bytes(signed.read_bytes().replace(b'r="40"', b'r="41"'))
    code, out, _ = check(state, str(modified))
    assert code == 1 and out.startswith("NOT TRUSTED (Invalid)") and "problem" in out


def test_another_deployments_anchors_do_not_trust_it(signed: Path, tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    code, out, _ = check(tmp_path, str(signed))
    assert code == 1 and "NOT TRUSTED (Valid)" in out


def test_an_asset_without_credentials_exits_1(state: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.svg"
    plain.write_bytes(SVG)
    code, out, _ = check(state, str(plain))
    assert code == 1 and "NOT TRUSTED (Missing)" in out


def test_a_file_that_is_not_an_image_exits_2(state: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello [bold]world[/bold]")
    code, _, err = check(state, str(text))
    assert code == 2 and "neither a PNG image nor an SVG document" in err


def test_without_trust_anchors_the_check_cannot_start(signed: Path, tmp_path: Path) -> None:
    code, _, err = check(tmp_path, str(signed))
    assert code == 2 and "custody init" in err
