"""Page tokens of the lineage list and closure RPCs over real gRPC: good tokens page completely; a forged,
altered, truncated, foreign (another key), cross-RPC, re-filtered or wrongly shaped token is INVALID_ARGUMENT /
PAGE_TOKEN_INVALID and never reaches the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout
from services.lineage.domain.service import GET_DOWNSTREAM, GET_UPSTREAM, LIST_STALE, LIST_VERSIONS
from tests.lineage.conftest import Client, create, start_client
from tests.lineage.test_queries_and_types import INTAKE, P, layered
from tests.support import page_tokens

KEY = page_tokens.new_key()
OTHER_SERVICE_KEY = page_tokens.new_key()
Names = dict[str, str]
AWAITING = (pb.STATUS_DRAFT, pb.STATUS_FLAGGED_FOR_REVIEW)


@dataclass(frozen=True)
class Listing:
    rpc: str
    call: Callable[[Client, Names, str], Any]  # (client, names, token) -> response, two items a page
    items: Callable[[Any], list[str]]
    refiltered: Callable[[Client, Names, str], Any]  # the same RPC with other filters
    total: int


def versions(parent: str, statuses: tuple[int, ...] = ()) -> Callable[[Client, Names, str], Any]:
    return lambda c, n, token: c.stub.ListVersions(
        pb.ListVersionsRequest(parent=parent, page_size=2, page_token=token, statuses=statuses),
        metadata=c.operator,
        timeout=10,
    )


def stale(parent: str) -> Callable[[Client, Names, str], Any]:
    return lambda c, n, token: c.stub.ListStale(
        pb.ListStaleRequest(parent=parent, page_size=2, page_token=token), metadata=c.operator, timeout=10
    )


def closure(method: str, root: str) -> Callable[[Client, Names, str], Any]:
    request = pb.GetDownstreamRequest if method == "GetDownstream" else pb.GetUpstreamRequest
    return lambda c, n, token: getattr(c.stub, method)(
        request(name=n[root], page_size=2, page_token=token), metadata=c.operator, timeout=10
    )


LISTINGS = {
    "ListVersions": Listing(
        LIST_VERSIONS.rpc,
        versions("projects/acme"),
        lambda page: [v.name for v in page.versions],
        versions(f"{P}/strategy"),
        6,
    ),
    "ListVersions (review queue)": Listing(
        LIST_VERSIONS.rpc,
        versions("projects/acme", AWAITING),
        lambda page: [v.name for v in page.versions],
        versions("projects/acme", (pb.STATUS_DRAFT,)),
        6,
    ),
    "ListVersions (every project)": Listing(
        LIST_VERSIONS.rpc,
        versions("projects/-"),
        lambda page: [v.name for v in page.versions],
        versions("projects/acme"),
        6,
    ),
    "ListStale": Listing(
        LIST_STALE.rpc, stale("projects/acme"), lambda page: [v.name for v in page.versions], stale("projects/other"), 4
    ),
    "GetDownstream": Listing(
        GET_DOWNSTREAM.rpc,
        closure("GetDownstream", "intake"),
        lambda page: [n.name for n in page.nodes],
        closure("GetDownstream", "s2"),
        4,
    ),
    "GetUpstream": Listing(
        GET_UPSTREAM.rpc,
        closure("GetUpstream", "e1"),
        lambda page: [n.name for n in page.nodes],
        closure("GetUpstream", "e2"),
        3,
    ),
}


def populate(client: Client) -> Names:
    """intake -> s1, s2 -> e1, e2, then intake v2: six versions, four of them stale."""
    names = layered(client)
    create(client, f"{P}/intake/brief", {**INTAKE, "objectives": ["grow", "keep"]})
    return names


@pytest.fixture
def served(layout: StateLayout, sqlite_url: str) -> Iterator[tuple[Client, Names]]:
    for client in start_client(layout, sqlite_url, page_token_key=KEY):
        yield client, populate(client)


def all_pages(client: Client, names: Names, listing: Listing) -> list[str]:
    seen, token = [], ""
    while True:
        page = listing.call(client, names, token)
        seen.extend(listing.items(page))
        token = page.next_page_token
        if not token:
            return seen


def second_page_token(client: Client, names: Names, listing: Listing) -> str:
    token = listing.call(client, names, "").next_page_token
    assert token
    return token


@pytest.mark.parametrize("name", LISTINGS)
def test_good_tokens_page_through_everything_once(served: tuple[Client, Names], name: str) -> None:
    seen = all_pages(*served, LISTINGS[name])
    assert len(seen) == LISTINGS[name].total == len(set(seen))


TAMPERED: dict[str, Callable[[str, str], str]] = {
    "flipped character": lambda token, rpc: page_tokens.flipped(token),
    "truncated": lambda token, rpc: page_tokens.truncated(token),
    "signed with another service's key": lambda token, rpc: page_tokens.resigned(token, OTHER_SERVICE_KEY, rpc),
    "unsigned payload": lambda token, rpc: token.split(".")[0],
}


@pytest.mark.parametrize("tamper", TAMPERED)
@pytest.mark.parametrize("name", LISTINGS)
def test_an_altered_or_foreign_token_is_page_token_invalid(
    served: tuple[Client, Names], name: str, tamper: str
) -> None:
    client, names = served
    listing = LISTINGS[name]
    bad = TAMPERED[tamper](second_page_token(client, names, listing), listing.rpc)
    page_tokens.assert_page_token_invalid(lambda: listing.call(client, names, bad))


@pytest.mark.parametrize("name", LISTINGS)
def test_a_token_from_another_list_rpc_is_page_token_invalid(served: tuple[Client, Names], name: str) -> None:
    client, names = served
    for other_name, other in LISTINGS.items():
        if other_name != name:
            token = second_page_token(client, names, other)
            page_tokens.assert_page_token_invalid(lambda: LISTINGS[name].call(client, names, token))  # noqa: B023


def test_a_closure_token_resigned_for_the_other_direction_is_page_token_invalid(
    served: tuple[Client, Names],
) -> None:
    """Same key, same cursor shape: only the RPC binding (and the filters) tell GetUpstream from GetDownstream."""
    client, names = served
    token = second_page_token(client, names, LISTINGS["GetDownstream"])
    bad = page_tokens.resigned(token, KEY, GET_UPSTREAM.rpc)
    page_tokens.assert_page_token_invalid(lambda: LISTINGS["GetUpstream"].call(client, names, bad))


@pytest.mark.parametrize("name", LISTINGS)
def test_a_token_replayed_with_other_filters_is_page_token_invalid(served: tuple[Client, Names], name: str) -> None:
    client, names = served
    listing = LISTINGS[name]
    token = second_page_token(client, names, listing)
    page_tokens.assert_page_token_invalid(lambda: listing.refiltered(client, names, token))


@pytest.mark.parametrize("shape", page_tokens.SHAPES)
@pytest.mark.parametrize("name", LISTINGS)
def test_a_correctly_signed_cursor_of_the_wrong_shape_is_page_token_invalid(
    served: tuple[Client, Names], name: str, shape: str
) -> None:
    client, names = served
    listing = LISTINGS[name]
    token = second_page_token(client, names, listing)
    bad = page_tokens.resigned(token, KEY, listing.rpc, page_tokens.wrong_shape(page_tokens.cursor_of(token), shape))
    page_tokens.assert_page_token_invalid(lambda: listing.call(client, names, bad))
