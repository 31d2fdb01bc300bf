"""The AI calls pages: the gateway's audit, newest first and filtered as ListCalls allows, and one call, metadata
only. The gateway runs with verbose audit on, so it holds redacted prompt and response texts: no page shows them."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
import pytest

from custody.ai_gateway.v1 import gateway_pb2
from services.console.pages.calls import PAGE_SIZE
from tests.console.conftest import OPERATOR_PROMPT, OPERATOR_REQUEST_ID, Minted
from tests.support.console import ServedConsole, structural_problems

SignIn = Callable[[str], httpx.Client]
ROW = re.compile(r'<tr data-testid="call-row">\s*<th scope="row"><a href="/calls/(call_[0-9a-f]{32})">')
# Texts shorter than this could appear on a page by coincidence (a word, a number); the audited ones are longer.
MIN_TEXT = 12


def listed(page: httpx.Response) -> list[str]:
    return [f"calls/{call_id}" for call_id in ROW.findall(page.text)]


def audited(minted: Minted, **filters: object) -> list[gateway_pb2.Call]:
    """The calls as the gateway answers them, texts included (ListCalls returns the whole record)."""
    request = gateway_pb2.ListCallsRequest(page_size=PAGE_SIZE, **filters)  # type: ignore[arg-type]
    return list(minted.gateway.ListCalls(request, metadata=minted.auth).calls)


# --- the list ------------------------------------------------------------------------------------------------------


def test_the_list_shows_every_audited_call_newest_first(minted: Minted, console_client: SignIn) -> None:
    page = console_client(minted.operator).get("/calls")
    assert page.status_code == 200
    calls = audited(minted)
    assert listed(page) == [c.name for c in calls]
    assert {c.envelope.caller.id for c in calls} == {"service:art_studio", "service:runs", "human:operator"}


def test_a_row_shows_the_calls_metadata(minted: Minted, console_client: SignIn) -> None:
    call = minted.blocked_call
    page = console_client(minted.operator).get("/calls", params={"outcome": "blocked"})
    (row,) = re.findall(r'<tr data-testid="call-row">(.*?)</tr>', page.text, re.S)
    for shown in (
        call.name.removeprefix("calls/"),
        call.envelope.caller.id,
        call.envelope.operation,
        f"{call.envelope.provider}/{call.envelope.model}",
        ">blocked<",
        call.error_reason,
        call.rule_id,
        call.envelope.request_id,
    ):
        assert shown and shown in row, shown


@pytest.mark.parametrize(
    ("params", "filters"),
    [
        ({"caller": "service:runs"}, {"caller": "service:runs"}),
        ({"caller": "service:art_studio"}, {"caller": "service:art_studio"}),
        ({"operation": "general_text"}, {"operation": "general_text"}),
        ({"outcome": "blocked"}, {"outcome": gateway_pb2.CALL_OUTCOME_BLOCKED}),
        ({"outcome": "succeeded", "caller": "human:operator"}, {"outcome": 1, "caller": "human:operator"}),
        ({"request_id": OPERATOR_REQUEST_ID}, {"request_id": OPERATOR_REQUEST_ID}),
        ({"caller": "human:nobody"}, {"caller": "human:nobody"}),
    ],
    ids=lambda value: "&".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else "",
)
def test_each_filter_narrows_the_list_as_list_calls_does(
    minted: Minted, console_client: SignIn, params: dict[str, str], filters: dict[str, object]
) -> None:
    page = console_client(minted.operator).get("/calls", params=params)
    assert page.status_code == 200
    expected = [c.name for c in audited(minted, **filters)]
    assert listed(page) == expected
    assert expected or "No call matches these filters." in page.text


def test_the_request_id_filter_finds_a_call_by_its_idempotency_key(minted: Minted, console_client: SignIn) -> None:
    page = console_client(minted.operator).get("/calls", params={"request_id": OPERATOR_REQUEST_ID})
    assert listed(page) == [minted.allowed_call.name]


def test_a_time_range_keeps_the_calls_made_within_it(minted: Minted, console_client: SignIn) -> None:
    allowed, blocked = minted.allowed_call, minted.blocked_call
    page = console_client(minted.operator).get(
        "/calls",
        params={
            "start_time": allowed.envelope.created_at.ToJsonString(),
            "end_time": blocked.envelope.created_at.ToJsonString(),
        },
    )
    assert listed(page) == [allowed.name]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"outcome": "maybe"}, "Outcome: one of succeeded, blocked, failed"),
        ({"start_time": "noon"}, "From (UTC): a date"),
        ({"caller": "service:" + "x" * 200}, "Caller: at most 200 characters"),
        ({"start_time": "2024-06-02", "end_time": "2024-06-01"}, "Before (UTC): must be later than the start"),
    ],
    ids=["outcome", "time", "too-long", "empty-range"],
)
def test_a_bad_filter_is_named_and_the_gateway_is_never_called(
    minted: Minted, console: ServedConsole, console_client: SignIn, params: dict[str, str], problem: str
) -> None:
    client = console_client(minted.operator)
    with console.calls_during() as made:
        page = client.get("/calls", params=params)
    assert page.status_code == 400
    assert problem in html.unescape(page.text) and listed(page) == []
    assert made == [("lineage", "GetServiceInfo")]


# --- one call ------------------------------------------------------------------------------------------------------


def test_a_call_page_shows_the_whole_audit_record_that_is_metadata(minted: Minted, console_client: SignIn) -> None:
    call = minted.allowed_call
    page = console_client(minted.operator).get(f"/{call.name}")
    assert page.status_code == 200
    record = re.search(r'data-testid="record">(.*?)</dl>', page.text, re.S)
    assert record is not None
    for label, shown in (
        ("RPC", call.rpc),
        ("Finish reason", call.finish_reason),
        ("Idempotency key", f"<code>{OPERATOR_REQUEST_ID}</code>"),
        ("Request sha256", call.request_sha256),
    ):
        assert re.search(rf"<dt>{label}</dt><dd>[^<]*(<code[^>]*>)?{re.escape(shown)}", record[1]), label
    assert 'data-testid="verbose">on: the gateway kept a redacted copy' in page.text
    summary = re.search(r'data-testid="call">(.*?)</dl>', page.text, re.S)
    assert summary is not None
    envelope = call.envelope
    for shown in (envelope.prompt_sha256, envelope.response_sha256, envelope.policy_version, envelope.request_id):
        assert shown and shown in summary[1], shown
    assert f"{envelope.usage.input_tokens} in, {envelope.usage.output_tokens} out" in summary[1]


def test_a_blocked_call_page_names_the_rule_and_the_reason(minted: Minted, console_client: SignIn) -> None:
    call = minted.blocked_call
    page = console_client(minted.operator).get(f"/{call.name}").text
    assert 'data-testid="outcome">blocked<' in page
    assert call.rule_id in page and f"<dt>Error reason</dt><dd>{call.error_reason}</dd>" in page


def test_no_page_shows_a_prompt_or_a_response_even_with_verbose_audit_on(
    minted: Minted, console_client: SignIn
) -> None:
    calls = [
        minted.gateway.GetCall(gateway_pb2.GetCallRequest(name=c.name), metadata=minted.auth) for c in audited(minted)
    ]
    texts = {t for c in calls for t in (c.prompt_redacted, c.response_redacted) if len(t) >= MIN_TEXT}
    assert all(c.verbose for c in calls)
    # The gateway holds texts a page could leak: every prompt, the operator's own and its answer among them.
    assert OPERATOR_PROMPT in texts and minted.allowed_call.response_redacted in texts
    client = console_client(minted.operator)
    pages = {"/calls": client.get("/calls").text}
    pages.update({f"/{c.name}": client.get(f"/{c.name}").text for c in calls})
    assert len(ROW.findall(pages["/calls"])) == len(calls)
    for path, page in pages.items():
        shown = html.unescape(page)
        for text in texts:
            assert text not in shown and text not in page, f"{path} shows an audited text: {text[:60]!r}"
        assert "quillwort" not in shown.lower(), path  # not even a word of the operator's prompt


@pytest.mark.parametrize(
    "call_id", ["nope", "call_1", "call_" + "F" * 32, "run_" + "0" * 32, "call_" + "0" * 32 + "%0A", "%2E%2E"]
)
def test_a_malformed_call_id_is_not_found_and_the_gateway_is_never_called(
    minted: Minted, console: ServedConsole, console_client: SignIn, call_id: str
) -> None:
    client = console_client(minted.operator)
    with console.calls_during() as made:
        page = client.get(f"/calls/{call_id}")
    assert page.status_code == 404
    assert "/calls/call_ followed by 32 lower-case hex digits" in page.text
    assert made == [("lineage", "GetServiceInfo")]


def test_a_call_that_does_not_exist_is_not_found_as_the_gateway_says(minted: Minted, console_client: SignIn) -> None:
    page = console_client(minted.operator).get("/calls/call_" + "0" * 32)
    assert page.status_code == 404
    assert 'data-testid="refusal-reason">CALL_NOT_FOUND<' in page.text


# --- who may read them -----------------------------------------------------------------------------------------------


def test_a_reviewer_reads_the_list_and_every_call(minted: Minted, console_client: SignIn) -> None:
    client = console_client(minted.reviewer)
    listing = client.get("/calls")
    assert listing.status_code == 200 and 'data-testid="signed-in-as">human:rita<' in listing.text
    assert listed(listing) == [c.name for c in audited(minted)]
    for call in (minted.allowed_call, minted.blocked_call):
        page = client.get(f"/{call.name}")
        assert page.status_code == 200 and call.request_sha256 in page.text


def test_the_calls_pages_have_the_structure_an_accessibility_check_needs(
    minted: Minted, console_client: SignIn
) -> None:
    client = console_client(minted.operator)
    for path in ("/calls", "/calls?outcome=maybe", f"/{minted.allowed_call.name}", f"/{minted.blocked_call.name}"):
        assert structural_problems(client.get(path).text) == [], path
