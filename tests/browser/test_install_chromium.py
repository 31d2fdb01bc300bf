"""Finding and installing the browser tests' Chromium: scripts/install-chromium.sh and find_chromium agree on
where it is, the script installs nothing when it is there, and neither falls back to anything silently. (The
script's apt-get branch needs root and a machine without Chromium: it is exercised by `make test` on a fresh one.)"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM_ENV, INSTALL_SCRIPT, find_chromium
from tests.support.processes import REPO_ROOT


def write_executable(path: Path, script: str) -> Path:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def run_install_script(tmp_path: Path, chromium: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The install script with CUSTODY_CHROMIUM=chromium and an apt-get (and sudo) that only record being called."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ["apt-get", "sudo"]:
        write_executable(bin_dir / tool, f'echo "{tool} $*" >> {calls}; exit 1')
    result = subprocess.run(
        [REPO_ROOT / INSTALL_SCRIPT],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CHROMIUM_ENV: str(chromium)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, calls


def test_the_install_script_does_nothing_when_the_configured_chromium_works(tmp_path: Path):
    chromium = write_executable(tmp_path / "chromium", 'echo "Chromium 156.0.0.0"')

    result, calls = run_install_script(tmp_path, chromium)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not calls.exists()


@pytest.mark.parametrize("state", ["missing", "broken"])
def test_the_install_script_refuses_a_configured_chromium_that_does_not_work(tmp_path: Path, state: str):
    chromium = tmp_path / "chromium"
    if state == "broken":
        write_executable(chromium, "exit 1")

    result, calls = run_install_script(tmp_path, chromium)

    assert result.returncode == 1
    assert f"CUSTODY_CHROMIUM={chromium} is not a working Chromium" in result.stderr
    assert not calls.exists()


def test_a_configured_chromium_that_is_not_there_fails_the_test_naming_the_variable_and_the_script(tmp_path: Path):
    missing = tmp_path / "chromium"
    with pytest.raises(pytest.fail.Exception, match=rf"{CHROMIUM_ENV}={missing} is not an executable file: run "):
        find_chromium({CHROMIUM_ENV: str(missing)})


def test_without_debians_chromium_the_test_fails_naming_the_script(tmp_path: Path):
    with pytest.raises(pytest.fail.Exception, match=rf"Debian's chromium .* run {re.escape(INSTALL_SCRIPT)}"):
        find_chromium({}, debian=tmp_path / "chromium")


def test_the_configured_chromium_is_preferred_to_debians(tmp_path: Path):
    chromium = write_executable(tmp_path / "chromium", 'echo "Chromium 156.0.0.0"')

    assert find_chromium({CHROMIUM_ENV: str(chromium)}, debian=tmp_path / "absent") == chromium
