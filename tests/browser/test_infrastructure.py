"""The browser-testing infrastructure itself, against tiny pages served from this test: the Chromium it drives,
navigation and clicks, and what the accessibility check accepts and refuses. Every page is served under a strict
Content-Security-Policy, as the console's will be, so the check is known to work there too."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import CHROMIUM_ARGS, accessibility_violations, assert_accessible, find_chromium

pytestmark = pytest.mark.browser

STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'"

ACCESSIBLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reviews - Custody</title>
<link rel="stylesheet" href="/site.css"></head>
<body><main>
<h1>Reviews</h1>
<img src="/logo.svg" alt="Custody" width="40" height="40">
<form><label for="note">Note</label> <input id="note" name="note"></form>
<button type="button" id="approve">Approve</button>
<p role="status" id="status">Pending</p>
</main><script src="/app.js"></script></body></html>"""

# Each defect is a WCAG 2.1 A/AA failure: no lang, no title, an image without alt, an input without a label,
# grey-on-white text (contrast 2.3:1 where AA asks 4.5:1).
INACCESSIBLE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="/site.css"></head>
<body><main>
<h1>Reviews</h1>
<img src="/logo.svg" width="40" height="40">
<form><input id="search" name="search"></form>
<p class="faint">Waiting for a reviewer</p>
</main></body></html>"""

# Meets every WCAG criterion checked, but breaks two best-practice rules: content outside any landmark, and a
# heading level skipped.
ADVISORY_ONLY = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Advice - Custody</title></head>
<body><h1>Runs</h1><h3>Latest</h3><p>No runs yet.</p></body></html>"""

FILES: dict[str, tuple[str, str]] = {
    "/": ("text/html; charset=utf-8", ACCESSIBLE),
    "/inaccessible": ("text/html; charset=utf-8", INACCESSIBLE),
    "/advisory": ("text/html; charset=utf-8", ADVISORY_ONLY),
    "/app.js": (
        "text/javascript",
        'document.getElementById("approve").addEventListener("click", () => {'
        ' document.getElementById("status").textContent = "Approved"; });',
    ),
    "/site.css": ("text/css", "body { color: #111; background: #fff; } .faint { color: #aaa; }"),
    "/logo.svg": (
        "image/svg+xml",
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>',
    ),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path not in FILES:
            self.send_error(404)
            return
        content_type, body = FILES[self.path]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", STRICT_CSP)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: requests are not the test's output."""


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The pages above on a loopback port of their own, for this module's tests."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def browser_context_args(site: str) -> dict[str, Any]:
    """Relative URLs are the site's, as console tests will point base_url at the console."""
    return {"base_url": site}


def test_the_browser_is_the_installed_chromium_not_a_playwright_download(browser: Browser):
    version = subprocess.run(
        [find_chromium(), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert browser.version in version


def test_chromium_runs_headless_with_the_offline_flags_and_a_throwaway_profile(page: Page):
    page.goto("chrome://version")
    command_line = page.locator("#command_line").inner_text().split()

    assert set(CHROMIUM_ARGS) <= set(command_line)
    profiles = [arg for arg in command_line if arg.startswith("--user-data-dir=")]
    assert len(profiles) == 1
    assert profiles[0].startswith(f"--user-data-dir={tempfile.gettempdir()}/playwright_chromiumdev_profile-")
    assert "HeadlessChrome" in page.evaluate("navigator.userAgent")


def test_a_click_runs_the_pages_script(page: Page):
    page.goto("/")
    expect(page.get_by_role("status")).to_have_text("Pending")

    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("status")).to_have_text("Approved")


def test_an_accessible_page_passes_the_accessibility_check(page: Page):
    page.goto("/")

    assert_accessible(page)


def test_an_inaccessible_page_fails_listing_each_rule_and_the_elements_at_fault(page: Page, site: str):
    page.goto("/inaccessible")

    with pytest.raises(AssertionError) as failure:
        assert_accessible(page)

    report = str(failure.value)
    assert f"{site}/inaccessible: 5 WCAG 2.1 A/AA accessibility violation(s)" in report
    for rule, impact in [
        ("html-has-lang", "serious"),
        ("document-title", "serious"),
        ("image-alt", "critical"),
        ("label", "critical"),
        ("color-contrast", "serious"),
    ]:
        assert f"- {rule} ({impact}): " in report
    for element in ["html  <html>", 'img  <img src="/logo.svg"', '#search  <input id="search"', 'p  <p class="faint">']:
        assert f"\n    {element}" in report


def test_best_practice_rules_are_advice_and_do_not_fail_the_check(page: Page):
    page.goto("/advisory")
    advice = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["best-practice"]}})
    assert {"region", "heading-order"} <= {violation["id"] for violation in advice.response["violations"]}

    assert accessibility_violations(page) == []
    assert_accessible(page)
