"""What the fixtures in tests/browser/conftest.py promise, seen from outside: a small suite that uses them runs in
a pytest of its own, and its outcomes, report and screenshots are checked here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import ARTIFACTS_ENV, CHROMIUM_ENV, INSTALL_SCRIPT, find_chromium
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.browser

PAGE_TESTS = """
import pytest

def test_passes(page):
    page.set_content("<title>Passing</title><h1>Passing</h1>")

def test_fails(page):
    page.set_content("<title>Failing</title><h1>Failing</h1>")
    assert False, "planted failure"

def test_leaves_a_cookie(context):
    context.add_cookies([{"name": "session", "value": "alice", "url": "http://127.0.0.1:9/"}])
    assert len(context.cookies()) == 1

def test_sees_no_cookie_from_the_test_before(context):
    assert context.cookies() == []

def test_opens_two_pages(context):
    context.new_page().set_content("<h1>First</h1>")
    context.new_page().set_content("<h1>Second</h1>")
"""

# Runs after the browser tests, as tests/service and tests/unit run after tests/browser in `make test`.
LATER_TESTS = """
import asyncio

def test_asyncio_runs_after_the_browser_tests():
    assert asyncio.run(asyncio.sleep(0, "ran")) == "ran"
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Without the cache (it would write into tmp_path) and hypothesis (a second of start-up the suite does not use).
INNER_PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-rA"]


def run_suite(tmp_path: Path, **env: str) -> tuple[dict[str, str], str]:
    """The suite above under tmp_path (browser_suite/ using our conftest, then later/), in a pytest of its own;
    returns each test's outcome by name and the whole output."""
    (tmp_path / "browser_suite").mkdir()
    (tmp_path / "browser_suite" / "__init__.py").write_text("")
    (tmp_path / "browser_suite" / "conftest.py").write_text("from tests.browser.conftest import *  # noqa: F403\n")
    (tmp_path / "browser_suite" / "test_pages.py").write_text(PAGE_TESTS)
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "test_after.py").write_text(LATER_TESTS)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    environment.update(env)
    result = subprocess.run(
        [*INNER_PYTEST, "browser_suite", "later"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    summary = re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+::(\w+)", result.stdout, re.MULTILINE)
    outcomes = {name: outcome for outcome, name in summary}
    return outcomes, result.stdout + result.stderr


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str, Path]:
    """One run of the suite for this module's tests (it starts a Chromium of its own): outcomes, output and the
    directory its screenshots went to."""
    tmp_path = tmp_path_factory.mktemp("suite")
    artifacts = tmp_path / "artifacts"
    outcomes, output = run_suite(tmp_path, **{ARTIFACTS_ENV: str(artifacts), CHROMIUM_ENV: str(find_chromium())})
    return outcomes, output, artifacts / "browser"


def test_the_suite_runs_with_only_its_planted_failure(suite: tuple[dict[str, str], str, Path]):
    outcomes, output, _ = suite
    assert outcomes == {
        "test_passes": "PASSED",
        "test_fails": "FAILED",
        "test_leaves_a_cookie": "PASSED",
        "test_sees_no_cookie_from_the_test_before": "PASSED",
        "test_opens_two_pages": "PASSED",
        "test_asyncio_runs_after_the_browser_tests": "PASSED",
    }, output


def test_every_test_leaves_a_screenshot_of_its_page_pass_or_fail(suite: tuple[dict[str, str], str, Path]):
    _, _, screenshots = suite
    for name in ["test_passes", "test_fails"]:
        assert (screenshots / f"browser_suite.test_pages.{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_test_with_two_pages_leaves_one_screenshot_each(suite: tuple[dict[str, str], str, Path]):
    _, _, screenshots = suite
    assert sorted(path.name for path in screenshots.glob("browser_suite.test_pages.test_opens_two_pages*")) == [
        "browser_suite.test_pages.test_opens_two_pages.page2.png",
        "browser_suite.test_pages.test_opens_two_pages.png",
    ]


def test_a_failing_tests_report_names_its_screenshot(suite: tuple[dict[str, str], str, Path]):
    _, output, screenshots = suite
    assert "browser screenshot" in output
    assert str(screenshots / "browser_suite.test_pages.test_fails.png") in output


def test_without_chromium_the_browser_tests_fail_and_say_how_to_install_it(tmp_path: Path):
    outcomes, output = run_suite(tmp_path, **{CHROMIUM_ENV: str(tmp_path / "no-chromium")})

    assert outcomes == {
        "test_passes": "ERROR",
        "test_fails": "ERROR",
        "test_leaves_a_cookie": "ERROR",
        "test_sees_no_cookie_from_the_test_before": "ERROR",
        "test_opens_two_pages": "ERROR",
        "test_asyncio_runs_after_the_browser_tests": "PASSED",
    }, output
    assert f"run {INSTALL_SCRIPT}" in output
