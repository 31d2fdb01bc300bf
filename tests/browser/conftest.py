"""Fixtures for tests in a real browser (tests/browser/ and below): Playwright driving Debian's Chromium.

- `browser`: one headless Chromium for all the tests in tests/browser/ (package scope, see below).
- `context`: a fresh browser context per test (its own cookies, storage and cache: nothing leaks between tests).
  When the test ends, pass or fail, every page still open in it is saved as a full-page screenshot in
  test-artifacts/browser/<module>.<test>.png; a failing test's report names the file.
- `page`: a new page in that context, the usual entry point.
- `browser_context_args`: the options of that context ({} here); override it (e.g. base_url=the console's URL).

Package scope, not session: while sync Playwright lives it marks an asyncio loop as running on the main thread,
so every later `asyncio.run()` in the same pytest process would fail. Chromium stops when the last test under
tests/browser/ has run, so browser tests must live there (tests/browser/console/ for the console).
Mark each module `pytestmark = pytest.mark.browser`. Accessibility: tests.support.browser.assert_accessible(page).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support import browser as browser_support


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """A failing browser test's report says where its screenshot is (written when its context closes, next)."""
    report = yield
    assert isinstance(report, pytest.TestReport)
    if report.when == "call" and report.failed and "context" in getattr(item, "fixturenames", ()):
        path = browser_support.screenshot_paths(item, 1)[0]
        report.sections.append(("browser screenshot", str(path)))
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Chromium is looked for before Playwright's driver starts, so a missing one fails at once."""
    executable = browser_support.find_chromium()
    with sync_playwright() as playwright:
        chromium = browser_support.launch_chromium(playwright, executable)
        yield chromium
        chromium.close()


@pytest.fixture
def browser_context_args() -> dict[str, Any]:
    """Keyword arguments of Browser.new_context for each test's context; a module or conftest overrides this
    fixture to set, say, base_url to the console's address or ignore_https_errors for a test certificate."""
    return {}


@pytest.fixture
def context(
    browser: Browser, browser_context_args: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[BrowserContext]:
    fresh = browser.new_context(**browser_context_args)
    try:
        yield fresh
    finally:
        browser_support.save_screenshots(fresh, request.node)
        fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
