"""ListCalls page tokens over real gRPC: good tokens page completely; a forged, altered, truncated, foreign
(another key), cross-RPC, re-filtered or wrongly shaped token is INVALID_ARGUMENT / PAGE_TOKEN_INVALID and never
reaches the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from custody.ai_gateway.v1 import gateway_pb2
from services.ai_gateway.domain.queries import LIST_CALLS
from services.cli.state import StateLayout
from tests.ai_gateway.conftest import GatewayFactory, as_operator, generate, stub
from tests.support import page_tokens
from tests.support.harness import ServiceHarness

KEY = page_tokens.new_key()
OTHER_SERVICE_KEY = page_tokens.new_key()
# An RPC of another service whose cursor has the same shape, (microseconds, id).
OTHER_RPC = "custody.runs.v1.RunsService/ListRuns"


@pytest.fixture
def gateway(start_gateway: GatewayFactory, layout: StateLayout) -> ServiceHarness:
    harness = start_gateway(page_token_key=KEY)  # the offline local provider
    for _ in range(5):
        generate(harness, layout)
    return harness


def list_calls(harness: ServiceHarness, layout: StateLayout, token: str, **filters: Any) -> Any:
    request = gateway_pb2.ListCallsRequest(page_size=2, page_token=token, **filters)
    return stub(harness).ListCalls(request, metadata=as_operator(layout), timeout=10)


def second_page_token(harness: ServiceHarness, layout: StateLayout) -> str:
    token = list_calls(harness, layout, "").next_page_token
    assert token
    return token


def test_good_tokens_page_through_every_call_once(gateway: ServiceHarness, layout: StateLayout) -> None:
    seen, token = [], ""
    while True:
        page = list_calls(gateway, layout, token)
        seen.extend(c.name for c in page.calls)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 5 == len(set(seen))


TAMPERED: dict[str, Callable[[str], str]] = {
    "flipped character": page_tokens.flipped,
    "truncated": page_tokens.truncated,
    "signed with another service's key": lambda token: page_tokens.resigned(token, OTHER_SERVICE_KEY, LIST_CALLS.rpc),
    "signed for another RPC with the right key": lambda token: page_tokens.resigned(token, KEY, OTHER_RPC),
    "unsigned payload": lambda token: token.split(".")[0],
}


@pytest.mark.parametrize("tamper", TAMPERED)
def test_an_altered_foreign_or_cross_rpc_token_is_page_token_invalid(
    gateway: ServiceHarness, layout: StateLayout, tamper: str
) -> None:
    bad = TAMPERED[tamper](second_page_token(gateway, layout))
    page_tokens.assert_page_token_invalid(lambda: list_calls(gateway, layout, bad))


@pytest.mark.parametrize(
    "filters", [{"operation": "explain_run_decision"}, {"caller": "service:runs"}, {"request_id": "r-1"}]
)
def test_a_token_replayed_with_other_filters_is_page_token_invalid(
    gateway: ServiceHarness, layout: StateLayout, filters: dict[str, str]
) -> None:
    token = second_page_token(gateway, layout)
    page_tokens.assert_page_token_invalid(lambda: list_calls(gateway, layout, token, **filters))


@pytest.mark.parametrize("shape", page_tokens.SHAPES)
def test_a_correctly_signed_cursor_of_the_wrong_shape_is_page_token_invalid(
    gateway: ServiceHarness, layout: StateLayout, shape: str
) -> None:
    token = second_page_token(gateway, layout)
    wrong = page_tokens.wrong_shape(page_tokens.cursor_of(token), shape)
    bad = page_tokens.resigned(token, KEY, LIST_CALLS.rpc, wrong)
    page_tokens.assert_page_token_invalid(lambda: list_calls(gateway, layout, bad))
