"""Browser testing: Playwright driving Debian's Chromium (never a browser Playwright downloads), screenshots as
test artifacts, and an axe-core accessibility check. The fixtures that use these live in tests/browser/conftest.py.

Chromium is found as scripts/install-chromium.sh installs it: $CUSTODY_CHROMIUM when set, else /usr/bin/chromium.
When it is missing the tests fail (never skip) and say to run that script (`make test` runs it first).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Error, Page, Playwright

from tests.support.processes import REPO_ROOT

CHROMIUM_ENV = "CUSTODY_CHROMIUM"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
INSTALL_SCRIPT = "scripts/install-chromium.sh"

# Headless, and nothing that reaches out to Google's hosts: on a closed network Chromium otherwise hangs on them.
# No --user-data-dir: Playwright refuses it for launch() and gives every launch a fresh temporary profile itself.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Where screenshots go: test-artifacts/browser/ at the repository root (git-ignored; CI uploads test-artifacts/).
ARTIFACTS_ENV = "CUSTODY_TEST_ARTIFACTS"

# The accessibility bar: every violation of a WCAG 2.0/2.1 level A or AA rule fails, whatever impact axe gives it
# (minor, moderate, serious, critical): a failed success criterion is a failure to conform, and the console is new,
# so there is no backlog to tolerate. axe's best-practice rules (landmarks, heading order, ...) are not run: they
# are advice, not criteria. "Incomplete" results (what axe cannot decide, e.g. contrast over an image) never fail.
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
_AXE_OPTIONS = {"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}, "resultTypes": ["violations"]}
_AXE = Axe()
_HTML_SHOWN = 120


def find_chromium(environ: Mapping[str, str] = os.environ, debian: Path = DEBIAN_CHROMIUM) -> Path:
    """The Chromium executable to drive; fails the test (never skips) when there is none."""
    configured = environ.get(CHROMIUM_ENV)
    candidate = Path(configured) if configured else debian
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    source = f"{CHROMIUM_ENV}={configured}" if configured else f"Debian's chromium ({debian})"
    pytest.fail(
        f"browser tests need Chromium, and {source} is not an executable file: run {INSTALL_SCRIPT} "
        f"(as root, or with sudo; `make test` runs it), or set {CHROMIUM_ENV} to a Chromium executable",
        pytrace=False,
    )


def launch_chromium(playwright: Playwright, executable: Path) -> Browser:
    """One headless Chromium with the flags above; a failed launch fails the test with the way to fix it."""
    try:
        return playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
    except Error as exc:
        pytest.fail(f"Chromium {executable} did not start ({exc.message}); try {INSTALL_SCRIPT}", pytrace=False)


def artifacts_dir() -> Path:
    """test-artifacts/browser/ (or $CUSTODY_TEST_ARTIFACTS/browser/), created on first use."""
    root = Path(os.environ.get(ARTIFACTS_ENV) or REPO_ROOT / "test-artifacts")
    directory = root / "browser"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot_name(item: pytest.Item) -> str:
    """The test's file name without extension: its module path under tests/browser/ and its name, file-safe.
    tests/browser/console/test_pages.py::test_home[admin] -> console.test_pages.test_home-admin-"""
    parts = list(item.path.relative_to(item.config.rootpath).with_suffix("").parts)
    if parts[:2] == ["tests", "browser"]:
        parts = parts[2:]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ".".join([*parts, item.name]))


def screenshot_paths(item: pytest.Item, count: int) -> list[Path]:
    """<name>.png for a test's first page, <name>.page2.png and so on for the pages it opened after it."""
    directory, name = artifacts_dir(), screenshot_name(item)
    return [directory / (f"{name}.png" if n == 1 else f"{name}.page{n}.png") for n in range(1, count + 1)]


def save_screenshots(context: BrowserContext, item: pytest.Item) -> list[Path]:
    """A full-page screenshot of every page still open in the test's context. A page that cannot be captured
    (it crashed, say) gives a warning instead, so the test's own outcome is what the report shows."""
    pages = context.pages
    saved = []
    for page, path in zip(pages, screenshot_paths(item, len(pages)), strict=True):
        try:
            page.screenshot(path=path, full_page=True)
        except Error as exc:
            warnings.warn(f"no screenshot of {page.url} for {item.nodeid}: {exc.message}", stacklevel=1)
        else:
            saved.append(path)
    return saved


def named_screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under a chosen name (the README's pictures are taken this way)."""
    path = artifacts_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of the WCAG 2.1 A/AA rules on the page as it is now (each with id, impact, help,
    helpUrl and nodes[].target)."""
    results = _AXE.run(page, options=_AXE_OPTIONS)
    return list(results.response["violations"])


def format_violations(url: str, violations: list[dict[str, Any]]) -> str:
    """One line per rule (id, impact, what it asks), then one per offending element: its CSS selector and the
    start of its HTML (axe's selectors are the shortest unique ones, often just `p`)."""
    lines = [f"{url}: {len(violations)} WCAG 2.1 A/AA accessibility violation(s) (axe-core):"]
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"]:
            selector = " >> ".join(map(str, node["target"]))
            html = " ".join(str(node.get("html", "")).split())
            lines.append(f"    {selector}  {html[:_HTML_SHOWN]}{'...' if len(html) > _HTML_SHOWN else ''}")
    return "\n".join(lines)


def assert_accessible(page: Page) -> None:
    """Fails, listing each violated rule and the elements at fault, unless the page meets the bar above. Call it
    on every page (and every state of a page worth seeing: an open dialog, a form showing its errors)."""
    violations = accessibility_violations(page)
    if violations:
        raise AssertionError(format_violations(page.url, violations))
