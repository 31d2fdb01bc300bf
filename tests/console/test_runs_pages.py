"""The runs pages: the list (newest first, filtered and paged as ListRuns allows) and one run with everything the
runs service holds about it, read over real HTTP by people signed in with their own tokens."""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from custody.runs.v1 import runs_pb2
from services.console.pages.runs import PAGE_SIZE
from tests.console.conftest import BULK_MODE, BULK_RUNS, MARKUP, Minted
from tests.runs.conftest import run_input
from tests.support.console import ServedConsole, structural_problems

SignIn = Callable[[str], httpx.Client]
ROW = re.compile(r'<tr data-testid="run-row">\s*<th scope="row"><a href="/runs/(run_[0-9a-f]{32})">')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


def listed(page: httpx.Response) -> list[str]:
    """The run names of a list page's rows, in order."""
    return [f"runs/{run_id}" for run_id in ROW.findall(page.text)]


def page_of(client: httpx.Client, run: runs_pb2.Run) -> httpx.Response:
    page = client.get(f"/{run.name}")
    assert page.status_code == 200, page.text
    return page


# --- the list ------------------------------------------------------------------------------------------------------


def test_the_list_shows_the_newest_runs_first_as_list_runs_orders_them(minted: Minted, console_client: SignIn) -> None:
    page = console_client(minted.operator).get("/runs")
    assert page.status_code == 200
    expected = minted.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=PAGE_SIZE), metadata=minted.auth).runs
    assert listed(page) == [r.name for r in expected]
    assert len(listed(page)) == PAGE_SIZE and minted.bulk[-1].name in listed(page)


def test_a_row_shows_the_runs_decision_creator_and_explanation_state(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.operator)
    page = client.get("/runs", params={"status": "blocked"})
    (row,) = re.findall(r'<tr data-testid="run-row">(.*?)</tr>', page.text, re.S)
    run_id = minted.blocked.name.removeprefix("runs/")
    for shown in (
        run_id,
        "cnc_rosette",
        "router-0.5mm",
        ">blocked<",
        ">red<",
        "score 0.120",
        "depth exceeds the stock",
    ):
        assert shown in row, shown
    assert "human:operator" in row and "<td>none</td>" in row  # no explanation asked for


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "blocked"}, lambda m: [m.blocked]),
        ({"risk_level": "red"}, lambda m: [m.blocked]),
        ({"explanation": "ready"}, lambda m: [m.explained]),
        ({"mode": "candidate_binding"}, lambda m: [m.verdict]),
        ({"tool_id": "custody-feasibility"}, lambda m: [m.verdict]),
        ({"created_by": "service:art_studio"}, lambda m: [m.session]),
        ({"created_by": "human:nobody"}, lambda m: []),
        ({"mode": "cnc_rosette", "status": "blocked"}, lambda m: [m.blocked]),
        ({"mode": "cnc_rosette", "status": "ok"}, lambda m: [m.markup, m.explained]),
    ],
    ids=lambda value: "&".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else "",
)
def test_each_filter_narrows_the_list_as_list_runs_does(
    minted: Minted,
    console_client: SignIn,
    params: dict[str, str],
    expected: Callable[[Minted], list[runs_pb2.Run]],
) -> None:
    page = console_client(minted.operator).get("/runs", params=params)
    assert page.status_code == 200
    assert listed(page) == [r.name for r in expected(minted)]
    if not expected(minted):
        assert "No run matches these filters." in page.text


def test_a_time_range_keeps_the_runs_created_within_it(minted: Minted, console_client: SignIn) -> None:
    start = minted.bulk[1].create_time.ToJsonString()
    end = minted.bulk[4].create_time.ToJsonString()
    page = console_client(minted.operator).get("/runs", params={"created_after": start, "created_before": end})
    assert listed(page) == [r.name for r in reversed(minted.bulk[1:4])]  # from the start, before the end


def test_the_next_page_carries_the_filters_and_continues_the_list(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.operator)
    first = client.get("/runs", params={"mode": BULK_MODE})
    (link,) = NEXT.findall(first.text)
    link = html.unescape(link)
    assert link.startswith(f"/runs?mode={BULK_MODE}&page_token=")
    second = client.get(link)
    assert second.status_code == 200
    assert NEXT.findall(second.text) == []
    assert len(listed(first)) == PAGE_SIZE and len(listed(second)) == BULK_RUNS - PAGE_SIZE
    assert listed(first) + listed(second) == [r.name for r in reversed(minted.bulk)]


def test_a_page_token_replayed_with_other_filters_is_refused_by_runs(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.operator)
    (link,) = NEXT.findall(client.get("/runs", params={"mode": BULK_MODE}).text)
    token = re.search(r"page_token=([^&]+)", html.unescape(link))
    assert token is not None
    page = client.get(f"/runs?mode=cnc_rosette&page_token={token[1]}")
    assert page.status_code == 400
    assert 'data-testid="refusal-reason">PAGE_TOKEN_INVALID<' in page.text


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"status": "finished"}, "Status: one of ok, blocked, error"),
        ({"risk_level": "purple"}, "Risk level: one of green, yellow, red, error"),
        ({"explanation": "soon"}, "Explanation: one of none, pending, ready, error"),
        ({"created_after": "yesterday"}, "Created from (UTC): a date"),
        ({"created_by": "x" * 201}, "Created by: at most 200 characters"),
        ({"mode": "cnc\x00rosette"}, "Mode: printable characters only"),
        (
            {"created_after": "2024-06-01", "created_before": "2024-06-01"},
            "Created before (UTC): must be later than the start of the range",
        ),
    ],
    ids=["status", "risk", "explanation", "time", "too-long", "control-character", "empty-range"],
)
def test_a_bad_filter_is_named_and_nothing_is_listed_or_called(
    minted: Minted, console: ServedConsole, console_client: SignIn, params: dict[str, str], problem: str
) -> None:
    client = console_client(minted.operator)
    with console.calls_during() as made:
        page = client.get("/runs", params=params)
    assert page.status_code == 400
    assert problem in html.unescape(page.text)
    assert 'aria-invalid="true"' in page.text and listed(page) == []
    assert made == [("lineage", "GetServiceInfo")]  # who is asking; runs is never called


# --- one run -------------------------------------------------------------------------------------------------------


def test_a_verdicts_page_shows_its_record_binding_and_lineage_record(minted: Minted, console_client: SignIn) -> None:
    verdict = minted.verdict
    page = page_of(console_client(minted.operator), verdict).text
    for shown in (
        verdict.mode,
        verdict.tool_id,
        verdict.engine_version,
        verdict.artifact_sha256,
        verdict.hashes.feasibility_sha256,
        verdict.request_id,
        f"leaf {verdict.ledger.leaf_index} of <code>{verdict.ledger.origin}</code>",
        'data-testid="status">ok<',
    ):
        assert shown in page, shown
    session_id = verdict.source_run.removeprefix("runs/")
    assert f'<a href="/runs/{session_id}" data-testid="source-run">' in page
    for bound in verdict.bound_attachments:
        assert f'href="/runs/{session_id}#{bound.attachment.rsplit("/", 1)[1]}"' in page
        assert bound.digest.sha256 in page
    assert f"<dd>DELIVERED after {verdict.lineage.attempts} attempt(s)</dd>" in page
    assert f'<a href="/versions/{verdict.lineage.version}">' in page
    assert f'<a href="/versions/{verdict.lineage.candidate}">' in page


def test_a_bound_attachment_links_to_its_row_on_the_source_runs_page(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.operator)
    session_page = page_of(client, minted.session).text
    for bound in minted.verdict.bound_attachments:
        row = re.search(rf'<tr id="{bound.attachment.rsplit("/", 1)[1]}"[^>]*>(.*?)</tr>', session_page, re.S)
        assert row is not None and bound.digest.sha256 in row[1]


def test_a_run_page_lists_every_attachment_with_its_file_name_size_digest_and_creator(
    minted: Minted, console_client: SignIn
) -> None:
    page = page_of(console_client(minted.operator), minted.session).text
    attachments = minted.runs.ListAttachments(
        runs_pb2.ListAttachmentsRequest(run=minted.session.name, page_size=100), metadata=minted.auth
    ).attachments
    assert len(attachments) == 6  # two candidates: an SVG, a spec and an envelope each
    rows = dict(re.findall(r'<tr id="(att_[0-9a-f]{32})" data-testid="attachment-row">(.*?)</tr>', page, re.S))
    assert list(rows) == [a.name.rsplit("/", 1)[1] for a in attachments]
    for attachment in attachments:
        row = rows[attachment.name.rsplit("/", 1)[1]]
        for shown in (
            attachment.kind,
            attachment.filename,
            f"{attachment.digest.size_bytes} bytes",
            attachment.digest.sha256,
            attachment.created_by.id,
        ):
            assert shown in row, shown


def test_a_run_page_shows_its_explanation_and_every_advisory(minted: Minted, console_client: SignIn) -> None:
    run = minted.explained
    page = page_of(console_client(minted.operator), run).text
    explanation = re.search(r'data-testid="explanation">(.*?)</dl>', page, re.S)
    assert explanation is not None and "<dd>ready since" in explanation[1]
    assert html.escape(run.explanation.summary) in explanation[1]
    advisories = minted.runs.ListAdvisories(
        runs_pb2.ListAdvisoriesRequest(run=run.name), metadata=minted.auth
    ).advisories
    assert {a.advisory_id for a in advisories} == {"note-clamp-1", run.explanation.advisory_id}
    for advisory in advisories:
        row = re.search(rf'<tr id="advisory-{re.escape(advisory.advisory_id)}"[^>]*>(.*?)</tr>', page, re.S)
        assert row is not None and advisory.created_by.id in row[1]
    assert "check the clamp before cutting" in page and "cam-checker 3.2" in page
    assert f'href="#advisory-{run.explanation.advisory_id}"' in page


def test_the_request_summary_feasibility_and_meta_are_shown_as_json(minted: Minted, console_client: SignIn) -> None:
    page = page_of(console_client(minted.operator), minted.explained).text
    summary = re.search(r'data-testid="request-summary">(.*?)</pre>', page, re.S)
    assert summary is not None
    assert html.unescape(summary[1]) == '{\n  "diameter_mm": 100.0,\n  "prompt_sha256": "' + "ab" * 32 + '"\n}'
    assert '"operator": "ana"' in html.unescape(page) and '"checks": [' in html.unescape(page)


def test_a_runs_own_text_is_shown_as_text_never_as_markup(minted: Minted, console_client: SignIn) -> None:
    page = page_of(console_client(minted.operator), minted.markup).text
    assert MARKUP not in page and "<script" not in page
    assert MARKUP in html.unescape(page)  # shown, as text


def test_the_verification_is_recomputed_on_every_view(
    minted: Minted, console: ServedConsole, console_client: SignIn
) -> None:
    client = console_client(minted.operator)
    run = minted.runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="verify_on_view")), metadata=minted.auth)
    content = f"toolpaths {uuid.uuid4()}".encode()  # bytes of this test alone: no other run shares the blob
    minted.runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(
            run=run.name,
            attachments=[runs_pb2.NewAttachment(kind="toolpaths_json", filename="toolpaths.json", data=content)],
        ),
        metadata=minted.auth,
    )
    assert "Verified now: <code>" in page_of(client, run).text
    digest = hashlib.sha256(content).hexdigest()
    blobs = Path(minted.services["runs"].settings.resolved_blob_dir) / "sha256"  # type: ignore[attr-defined]
    (blobs / digest[:2] / digest[2:4] / digest).write_bytes(content.upper())  # same size, other bytes
    with console.calls_during() as made:
        page = page_of(client, run).text
    assert ("runs", "VerifyRun") in made
    assert "<strong>Verification failed</strong>" in page and "BLOB_CORRUPTED" in page


@pytest.mark.parametrize(
    "run_id",
    [
        "nope",
        "run_123",
        "run_" + "A" * 32,
        "run_" + "0" * 33,
        "att_" + "0" * 32,
        "run_" + "0" * 32 + "%0A",
        "run_" + "0" * 32 + "%20",
        "%2E%2E",
    ],
)
def test_a_malformed_run_id_is_not_found_and_runs_is_never_called(
    minted: Minted, console: ServedConsole, console_client: SignIn, run_id: str
) -> None:
    client = console_client(minted.operator)
    with console.calls_during() as made:
        page = client.get(f"/runs/{run_id}")
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text and "/runs/run_ followed by 32 lower-case hex digits" in page.text
    assert made == [("lineage", "GetServiceInfo")]


def test_a_run_that_does_not_exist_is_not_found_as_runs_says(minted: Minted, console_client: SignIn) -> None:
    page = console_client(minted.operator).get("/runs/run_" + "0" * 32)
    assert page.status_code == 404
    assert 'data-testid="refusal-reason">RUN_NOT_FOUND<' in page.text


# --- who may read them -----------------------------------------------------------------------------------------------


def test_a_reviewer_reads_the_list_and_every_run(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.reviewer)
    listing = client.get("/runs")
    assert listing.status_code == 200 and 'data-testid="signed-in-as">human:rita<' in listing.text
    expected = minted.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=PAGE_SIZE), metadata=minted.auth).runs
    assert listed(listing) == [r.name for r in expected]
    for run in (minted.verdict, minted.session, minted.explained):
        assert run.artifact_sha256 in page_of(client, run).text


def test_without_a_session_the_runs_pages_send_to_sign_in(minted: Minted, console: ServedConsole) -> None:
    with console.client() as anonymous, console.calls_during() as made:
        for path in ("/runs", f"/{minted.verdict.name}"):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    assert made == []


def test_the_runs_pages_have_the_structure_an_accessibility_check_needs(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.operator)
    for path in (
        "/runs",
        "/runs?status=finished",
        f"/{minted.verdict.name}",
        f"/{minted.session.name}",
        f"/{minted.explained.name}",
        "/runs/nope",
    ):
        assert structural_problems(client.get(path).text) == [], path
