"""Signed page tokens (services/common/pagination.py): a token pages only the RPC, filters and service (key) it
was issued for, unaltered; anything else is PAGE_TOKEN_INVALID before the store sees a cursor. The gRPC tests of
each service (test_page_tokens.py in tests/runs, tests/lineage, tests/ai_gateway) check the same through the
wire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.common.pagination import MAX_TOKEN_CHARS, PagedList, PageTokens

KEY = b"k" * 32
TOKENS = PageTokens(KEY)
LIST = PagedList("custody.test.v1.TestService/ListThings", (int, str))
OTHER_LIST = PagedList("custody.test.v1.TestService/ListOtherThings", (int, str))
FILTERS = {"status": "OK", "mode": "cnc"}
ALPHABET = string.ascii_letters + string.digits + "-_."


def reason_of(token: str, listing: PagedList = LIST, filters: dict[str, Any] = FILTERS, tokens: PageTokens = TOKENS):
    with pytest.raises(InvalidArgument) as raised:
        tokens.decode(listing, token, filters)
    assert [v.field for v in raised.value.violations] == ["page_token"]
    return raised.value.reason


def signed(payload: bytes, rpc: str = LIST.rpc, key: bytes = KEY) -> str:
    """A token signed with the service's own key over any payload: what only a key holder could make."""
    mac = hmac.new(key, rpc.encode() + b"\n" + payload, hashlib.sha256).digest()
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (payload, mac))


def digest_of(filters: dict[str, Any]) -> str:
    """The filter digest a token of FILTERS carries (read back from a real token, not recomputed here)."""
    payload = TOKENS.encode(LIST, [1, "a"], filters).split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["f"]


def test_a_token_round_trips_the_last_sort_key_whatever_the_filter_order() -> None:
    token = TOKENS.encode(LIST, [1_700_000_000_000_000, "run_ab"], FILTERS)
    cursor = TOKENS.decode(LIST, token, dict(reversed(FILTERS.items())))
    assert cursor is not None and cursor.after == [1_700_000_000_000_000, "run_ab"]


def test_an_empty_token_is_the_first_page() -> None:
    assert TOKENS.decode(LIST, "", FILTERS) is None


def test_every_single_character_change_is_refused() -> None:
    token = TOKENS.encode(LIST, [1_700_000_000_000_000, "run_ab"], FILTERS)
    for position, original in enumerate(token):
        for replacement in ALPHABET:
            if replacement != original:
                altered = token[:position] + replacement + token[position + 1 :]
                assert reason_of(altered) == "PAGE_TOKEN_INVALID", (position, replacement)


@pytest.mark.parametrize("cut", [1, 2, 10, 43, 44])
def test_a_truncated_token_is_refused(cut: int) -> None:
    token = TOKENS.encode(LIST, [1, "run_ab"], FILTERS)
    assert reason_of(token[:-cut]) == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize(
    "garbage", ["not base64!", "eyJ4IjoxfQ", "AAAA", ".", "a.b.c", "é.é", "x" * (MAX_TOKEN_CHARS + 1)]
)
def test_garbage_is_refused(garbage: str) -> None:
    assert reason_of(garbage) == "PAGE_TOKEN_INVALID"


def test_an_unsigned_token_of_the_old_format_is_refused() -> None:
    payload = json.dumps({"a": [1, "run_ab"], "f": digest_of(FILTERS)}).encode()
    assert reason_of(base64.urlsafe_b64encode(payload).decode().rstrip("=")) == "PAGE_TOKEN_INVALID"


def test_a_token_of_another_key_is_refused() -> None:
    other_service = PageTokens(b"o" * 32)
    assert reason_of(other_service.encode(LIST, [1, "run_ab"], FILTERS)) == "PAGE_TOKEN_INVALID"


def test_a_token_of_another_list_rpc_with_the_same_key_and_filters_is_refused() -> None:
    assert reason_of(TOKENS.encode(OTHER_LIST, [1, "run_ab"], FILTERS)) == "PAGE_TOKEN_INVALID"


def test_a_token_replayed_with_other_filters_is_refused() -> None:
    token = TOKENS.encode(LIST, [1, "run_ab"], FILTERS)
    assert reason_of(token, filters={**FILTERS, "status": "BLOCKED"}) == "PAGE_TOKEN_INVALID"
    assert reason_of(token, filters={}) == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize(
    "after",
    [
        ["1700000000000000", "run_ab"],  # a string where the store compares an integer timestamp
        [1, "run_ab", 3, 4, 5],
        [1],
        [],
        [{"nested": 1}, "run_ab"],
        [[1], "run_ab"],
        [2**53, "run_ab"],
        [-(2**53), "run_ab"],
        [2**63, "run_ab"],
        [10**400, "run_ab"],
        [True, "run_ab"],
        [1.5, "run_ab"],
        [None, "run_ab"],
        [1, 2],
        [1, "x" * 257],
        [1, "run\x00ab"],
    ],
)
def test_a_signed_cursor_of_the_wrong_shape_is_refused(after: list[Any]) -> None:
    payload = json.dumps({"a": after, "f": digest_of(FILTERS)}).encode()
    assert reason_of(signed(payload)) == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"a": [1, "x"]}', b'{"f": "x"}', b'{"a": "x", "f": "y"}', b"\xff"]
)
def test_a_signed_payload_that_is_not_a_cursor_is_refused(payload: bytes) -> None:
    assert reason_of(signed(payload)) == "PAGE_TOKEN_INVALID"


def test_the_widest_cursor_fits_in_a_token() -> None:
    token = TOKENS.encode(LIST, [-(2**53) + 1, "\x01" * 256], {"f": "y" * 10_000})
    assert len(token) <= MAX_TOKEN_CHARS
    assert TOKENS.decode(LIST, token, {"f": "y" * 10_000}) is not None


def test_a_service_refuses_to_issue_a_cursor_of_another_shape() -> None:
    with pytest.raises(ValueError):
        TOKENS.encode(LIST, ["1", "run_ab"], FILTERS)


def test_keys_shorter_than_256_bits_are_refused() -> None:
    with pytest.raises(ValueError):
        PageTokens(b"k" * 31)


def test_two_ephemeral_keys_do_not_accept_each_others_tokens() -> None:
    first, second = PageTokens.ephemeral(), PageTokens.ephemeral()
    assert reason_of(first.encode(LIST, [1, "a"], FILTERS), tokens=second) == "PAGE_TOKEN_INVALID"
