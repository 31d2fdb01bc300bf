"""The review console in a real browser, against a real stack after `custody demo`: a reviewer signs in, opens the
queue, views a candidate, approves it, sees a stale chain refused with its reasons, and signs out. Every page is
checked with axe-core; the screenshots the README shows are taken here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from playwright.sync_api import Page, expect

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from tests.support.browser import assert_accessible, named_screenshot
from tests.support.console_stack import ConsoleStack, console_stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with console_stack(tmp_path_factory.mktemp("console-browser")) as stack:
        yield stack


def sign_in(page: Page, site: ConsoleStack, token: str) -> None:
    page.goto(f"{site.url}/queue")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Your token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def test_the_sign_in_page_is_accessible(page: Page, site: ConsoleStack) -> None:
    page.goto(f"{site.url}/sign-in")
    assert_accessible(page)


def test_a_reviewer_opens_the_queue_and_sees_stale_badges_with_their_cause(page: Page, site: ConsoleStack) -> None:
    sign_in(page, site, site.reviewer_token)
    expect(page.get_by_test_id("signed-in-as")).to_have_text("human:rita")
    stale_row = page.locator("tr", has=page.locator(".badge.stale")).first
    expect(stale_row).to_contain_text("since")
    expect(page.locator("tbody tr")).not_to_have_count(0)
    assert_accessible(page)
    named_screenshot(page, "console-queue")


def test_a_reviewer_views_a_candidate_and_approves_it(page: Page, site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[0]
    sign_in(page, site, site.reviewer_token)
    page.locator(f'a[href="/versions/{candidate}"]').first.click()
    expect(page.get_by_role("heading", name="Decision")).to_be_visible()
    preview = page.locator("img.preview")
    expect(preview).to_be_visible()
    # The image really decoded (an SVG refused by the browser or the policy would have no natural width).
    page.wait_for_function(
        "() => { const i = document.querySelector('img.preview'); return i.complete && i.naturalWidth > 0 }"
    )
    expect(page.get_by_test_id("digests")).to_contain_text(site.version(candidate).snapshot_sha256)
    expect(page.get_by_text("No feasibility run has decided this candidate yet.")).to_be_visible()
    expect(page.get_by_test_id("call")).to_contain_text("Prompt sha256")
    expect(page.get_by_test_id("gate")).to_contain_text("The approval gate passes")
    assert_accessible(page)
    named_screenshot(page, "console-artifact")
    page.get_by_role("radio", name="Approve").check()
    page.get_by_label("Rationale (required)").fill("Petals and rings as briefed; feasibility ALLOW.")
    page.get_by_role("button", name="Record decision").click()
    expect(page.get_by_test_id("decided")).to_contain_text("approve")
    expect(page.get_by_test_id("status")).to_have_text("approved")
    version = site.version(candidate)
    assert version.status.status == lineage_pb2.STATUS_APPROVED
    assert version.status.actor.id == "human:rita"


def test_a_bound_candidate_shows_its_verdict_and_its_runs_verified_now(page: Page, site: ConsoleStack) -> None:
    sign_in(page, site, site.reviewer_token)
    page.goto(f"{site.url}/versions/{site.approved_candidate()}")
    expect(page.get_by_test_id("verdict").first).to_have_text("ALLOW")
    expect(page.get_by_test_id("verification").first).to_contain_text("Verified now")
    expect(page.locator("figure.graph a")).not_to_have_count(0)
    assert_accessible(page)


def test_a_stale_chain_is_refused_with_its_reasons_and_stays_as_it_was(page: Page, site: ConsoleStack) -> None:
    stale = site.stale_candidate()
    before = site.version(stale).status.revision
    sign_in(page, site, site.reviewer_token)
    page.goto(f"{site.url}/versions/{stale}")
    page.get_by_role("radio", name="Approve").check()
    page.get_by_label("Rationale (required)").fill("Trying to approve a stale candidate.")
    page.get_by_role("button", name="Record decision").click()
    refusal = page.locator(".refusal").first
    expect(refusal).to_contain_text("Your decision was refused")
    expect(page.get_by_test_id("violations").first).to_contain_text("LINEAGE_STALE")
    expect(page.get_by_test_id("violations").first).to_contain_text("UPSTREAM_NOT_LATEST")
    expect(page.get_by_test_id("unchanged")).to_contain_text("Nothing changed")
    assert site.version(stale).status.revision == before
    assert_accessible(page)
    named_screenshot(page, "console-refused")


def test_the_operator_who_requested_a_candidate_is_refused_by_four_eyes(page: Page, site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[-1]
    sign_in(page, site, site.operator_token)
    page.goto(f"{site.url}/versions/{candidate}")
    expect(page.get_by_test_id("refusal-reason").first).to_have_text("SELF_APPROVAL")
    page.get_by_role("radio", name="Approve").check()
    page.get_by_label("Rationale (required)").fill("My own candidate.")
    page.get_by_role("button", name="Record decision").click()
    expect(page.get_by_test_id("unchanged")).to_be_visible()
    assert site.version(candidate).status.status == lineage_pb2.STATUS_DRAFT


def test_signing_out_ends_the_session(page: Page, site: ConsoleStack) -> None:
    sign_in(page, site, site.reviewer_token)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("Signed out")
    page.goto(f"{site.url}/queue")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "custody_session"]


def _as_operator(site: ConsoleStack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {site.operator_token}"),)


def _a_design_session(site: ConsoleStack) -> str:
    with grpc.insecure_channel(site.stack.address("runs")) as channel:
        request = runs_pb2.ListRunsRequest(created_by="service:art_studio", page_size=1)
        response = runs_pb2_grpc.RunsServiceStub(channel).ListRuns(request, metadata=_as_operator(site), timeout=10)
    return str(response.runs[0].name)


def _an_ai_call(site: ConsoleStack) -> str:
    with grpc.insecure_channel(site.stack.address("ai_gateway")) as channel:
        request = gateway_pb2.ListCallsRequest(page_size=1)
        stub = gateway_pb2_grpc.AiGatewayServiceStub(channel)
        response = stub.ListCalls(request, metadata=_as_operator(site), timeout=10)
    return str(response.calls[0].name)


@pytest.mark.parametrize(
    "path",
    [
        lambda site: "/runs",
        lambda site: "/runs?status=finished",  # a filter's problem, shown next to its field
        lambda site: f"/{site.demo['runs'][0]}",  # a verdict: bound attachments, lineage record, verification
        lambda site: f"/{_a_design_session(site)}",  # its attachments
        lambda site: "/calls",
        lambda site: "/calls?outcome=blocked",
        lambda site: f"/{_an_ai_call(site)}",
    ],
    ids=["runs", "runs-bad-filter", "verdict", "session", "calls", "calls-filtered", "call"],
)
def test_the_runs_and_calls_pages_are_accessible(
    page: Page, site: ConsoleStack, path: Callable[[ConsoleStack], str]
) -> None:
    sign_in(page, site, site.reviewer_token)
    page.goto(f"{site.url}{path(site)}")
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    assert_accessible(page)
