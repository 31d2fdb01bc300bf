"""Page tokens of the runs list RPCs over real gRPC: good tokens page completely; a forged, altered, truncated,
foreign (another key), cross-RPC, re-filtered or wrongly shaped token is INVALID_ARGUMENT / PAGE_TOKEN_INVALID
and never reaches the store (no INTERNAL, no wrong page)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.runs.domain.pages import LIST_ADVISORIES, LIST_ATTACHMENTS, LIST_RUNS
from tests.runs.conftest import RunsClient, run_input
from tests.support import page_tokens
from tests.support.harness import ServiceHarness

KEY = page_tokens.new_key()
OTHER_SERVICE_KEY = page_tokens.new_key()


@dataclass(frozen=True)
class Listing:
    """One list RPC: how to call it with a token, and the names of what a page holds."""

    rpc: str
    call: Callable[[RunsClient, str, str], Any]  # (client, run, token) -> response
    items: Callable[[Any], list[str]]
    # The same RPC with other filters, to replay a token into.
    refiltered: Callable[[RunsClient, str, str], Any]


LISTINGS = {
    "ListRuns": Listing(
        LIST_RUNS.rpc,
        lambda c, run, token: c.ListRuns(runs_pb2.ListRunsRequest(page_size=2, page_token=token)),
        lambda page: [r.name for r in page.runs],
        lambda c, run, token: c.ListRuns(runs_pb2.ListRunsRequest(page_size=2, page_token=token, mode="cnc_rosette")),
    ),
    "ListAttachments": Listing(
        LIST_ATTACHMENTS.rpc,
        lambda c, run, token: c.ListAttachments(
            runs_pb2.ListAttachmentsRequest(run=run, page_size=2, page_token=token)
        ),
        lambda page: [a.name for a in page.attachments],
        lambda c, run, token: c.ListAttachments(
            runs_pb2.ListAttachmentsRequest(run=run, kind="other", page_size=2, page_token=token)
        ),
    ),
    "ListAdvisories": Listing(
        LIST_ADVISORIES.rpc,
        lambda c, run, token: c.ListAdvisories(runs_pb2.ListAdvisoriesRequest(run=run, page_size=2, page_token=token)),
        lambda page: [a.advisory_id for a in page.advisories],
        # ListAdvisories has no filter but its run: another run is the other filter.
        lambda c, run, token: c.ListAdvisories(
            runs_pb2.ListAdvisoriesRequest(run=c.other_run, page_size=2, page_token=token)
        ),
    ),
}


def start(layout: StateLayout, database_url: str, tmp_path: Path, **settings: str) -> ServiceHarness:
    values = {"database_url": database_url, "blob_dir": str(tmp_path / "blobs"), **settings}
    return ServiceHarness("runs", layout, settings=values)


def populate(client: RunsClient) -> str:
    """Five runs; the last holds five attachments and five advisories. Returns that run's name."""
    runs = [client.CreateRun(runs_pb2.CreateRunRequest(run=run_input())) for _ in range(5)]
    run = runs[-1].name
    items = [runs_pb2.NewAttachment(kind="other", filename=f"f{i}.txt", data=b"x%d" % i) for i in range(5)]
    client.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=run, attachments=items))
    for i in range(5):
        request = runs_pb2.AttachAdvisoryRequest(
            run=run, advisory_id=f"adv-{i}", kind=runs_pb2.ADVISORY_KIND_NOTE, engine_id="e", engine_version="1"
        )
        client.AttachAdvisory(request)
    client.other_run = runs[0].name  # type: ignore[attr-defined]
    return run


@pytest.fixture
def served(layout: StateLayout, sqlite_url: str, tmp_path: Path) -> Iterator[tuple[RunsClient, str]]:
    with start(layout, sqlite_url, tmp_path, page_token_key=KEY) as harness:
        client = RunsClient(harness, layout)
        yield client, populate(client)


def all_pages(client: RunsClient, run: str, listing: Listing) -> list[str]:
    seen, token = [], ""
    while True:
        page = listing.call(client, run, token)
        seen.extend(listing.items(page))
        token = page.next_page_token
        if not token:
            return seen


@pytest.mark.parametrize("name", LISTINGS)
def test_good_tokens_page_through_everything_once(served: tuple[RunsClient, str], name: str) -> None:
    client, run = served
    seen = all_pages(client, run, LISTINGS[name])
    assert len(seen) == 5 and len(set(seen)) == 5


def second_page_token(client: RunsClient, run: str, listing: Listing) -> str:
    token = listing.call(client, run, "").next_page_token
    assert token
    return token


TAMPERED: dict[str, Callable[[str, str], str]] = {
    "flipped character": lambda token, rpc: page_tokens.flipped(token),
    "truncated": lambda token, rpc: page_tokens.truncated(token),
    "signed with another service's key": lambda token, rpc: page_tokens.resigned(token, OTHER_SERVICE_KEY, rpc),
    "unsigned payload": lambda token, rpc: token.split(".")[0],
    "forged cursor under the old signature": lambda token, rpc: (
        page_tokens.resigned(token, page_tokens.new_key(), rpc, [0, "run_0"]).split(".")[0] + "." + token.split(".")[1]
    ),
}


@pytest.mark.parametrize("tamper", TAMPERED)
@pytest.mark.parametrize("name", LISTINGS)
def test_an_altered_or_foreign_token_is_page_token_invalid(
    served: tuple[RunsClient, str], name: str, tamper: str
) -> None:
    client, run = served
    listing = LISTINGS[name]
    bad = TAMPERED[tamper](second_page_token(client, run, listing), listing.rpc)
    page_tokens.assert_page_token_invalid(lambda: listing.call(client, run, bad))


@pytest.mark.parametrize("name", LISTINGS)
def test_a_token_from_another_list_rpc_is_page_token_invalid(served: tuple[RunsClient, str], name: str) -> None:
    client, run = served
    for other_name, other in LISTINGS.items():
        if other_name != name:
            token = second_page_token(client, run, other)
            page_tokens.assert_page_token_invalid(lambda: LISTINGS[name].call(client, run, token))  # noqa: B023


@pytest.mark.parametrize("name", LISTINGS)
def test_a_token_replayed_with_other_filters_is_page_token_invalid(served: tuple[RunsClient, str], name: str) -> None:
    client, run = served
    listing = LISTINGS[name]
    token = second_page_token(client, run, listing)
    page_tokens.assert_page_token_invalid(lambda: listing.refiltered(client, run, token))


@pytest.mark.parametrize("shape", page_tokens.SHAPES)
@pytest.mark.parametrize("name", LISTINGS)
def test_a_correctly_signed_cursor_of_the_wrong_shape_is_page_token_invalid(
    layout: StateLayout, database_url: str, tmp_path: Path, name: str, shape: str
) -> None:
    with start(layout, database_url, tmp_path, page_token_key=KEY) as harness:
        client = RunsClient(harness, layout)
        run = populate(client)
        listing = LISTINGS[name]
        token = second_page_token(client, run, listing)
        bad = page_tokens.resigned(
            token, KEY, listing.rpc, page_tokens.wrong_shape(page_tokens.cursor_of(token), shape)
        )
        page_tokens.assert_page_token_invalid(lambda: listing.call(client, run, bad))


def test_a_token_survives_a_restart_when_the_key_is_configured(
    layout: StateLayout, sqlite_url: str, tmp_path: Path
) -> None:
    listing = LISTINGS["ListRuns"]
    with start(layout, sqlite_url, tmp_path, page_token_key=KEY) as harness:
        client = RunsClient(harness, layout)
        run = populate(client)
        first = listing.call(client, run, "")
        expected = all_pages(client, run, listing)
    with start(layout, sqlite_url, tmp_path, page_token_key=KEY) as harness:
        client = RunsClient(harness, layout)
        rest = listing.call(client, run, first.next_page_token)
        assert listing.items(rest) == expected[2:4]


def test_without_a_configured_key_a_restart_refuses_old_tokens(
    layout: StateLayout, sqlite_url: str, tmp_path: Path
) -> None:
    config = layout.service_config("runs")
    config.write_text("".join(line for line in config.read_text().splitlines(True) if "page_token_key" not in line))
    listing = LISTINGS["ListRuns"]
    with start(layout, sqlite_url, tmp_path) as harness:
        client = RunsClient(harness, layout)
        run = populate(client)
        token = second_page_token(client, run, listing)
    with start(layout, sqlite_url, tmp_path) as harness:
        client = RunsClient(harness, layout)
        page_tokens.assert_page_token_invalid(lambda: listing.call(client, run, token))
