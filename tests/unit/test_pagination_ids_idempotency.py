"""Shared request conventions: page sizes, server-generated ids, request_id idempotency keys (page tokens:
test_page_tokens.py)."""

from __future__ import annotations

import pytest

from services.common.errors import AlreadyExists, InvalidArgument
from services.common.idempotency import ensure_same_request, fingerprint, validate_request_id
from services.common.ids import id_pattern, new_id
from services.common.pagination import MAX_PAGE_SIZE, page_size


def test_page_size_defaults_clamps_and_refuses_negatives() -> None:
    assert page_size(0) == 50
    assert page_size(10) == 10
    assert page_size(10**6) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_ids_have_128_random_bits_and_match_their_pattern() -> None:
    ids = {new_id("run") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(id_pattern("run").fullmatch(i) for i in ids)


@pytest.mark.parametrize("bad", ["run_../x", "run_" + "a" * 31, "run_" + "A" * 32, "call_" + "a" * 32, "run_a" * 9])
def test_id_pattern_admits_nothing_else(bad: str) -> None:
    assert not id_pattern("run").fullmatch(bad)


def test_fingerprint_ignores_the_key_and_key_order() -> None:
    assert fingerprint({"request_id": "a", "x": 1, "y": [1, 2]}) == fingerprint(
        {"y": [1, 2], "x": 1, "request_id": "b"}
    )
    assert fingerprint({"x": 1}) != fingerprint({"x": 2})


def test_same_key_with_a_different_request_is_already_exists() -> None:
    ensure_same_request("req-1", "abc", "abc")
    with pytest.raises(AlreadyExists) as raised:
        ensure_same_request("req-1", "abc", "def")
    assert raised.value.reason == "REQUEST_ID_REUSED"


def test_malformed_request_id_is_invalid_argument() -> None:
    validate_request_id("")
    validate_request_id("req-ok_1:2.3")
    with pytest.raises(InvalidArgument):
        validate_request_id("no spaces please")


@pytest.mark.parametrize("value", ["req-1\n", "req-1\r\n"])
def test_a_trailing_newline_does_not_sneak_through_validation(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_request_id(value)
    assert not id_pattern("run").fullmatch("run_" + "a" * 32 + "\n")
