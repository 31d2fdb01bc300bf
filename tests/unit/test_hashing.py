"""Canonical hashing: RFC 8785 JSON and sha256, the only hashing in the repository."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.hashing import canonical_json, is_sha256_hex, sha256_canonical, sha256_chunks, sha256_text


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'


def test_canonical_json_formats_numbers_as_ecmascript() -> None:
    # RFC 8785 section 3.2.2.3: integral floats lose the ".0", large ones use exponent notation.
    assert canonical_json([1.0, 1e21, 0.5, -0.0]) == b"[1,1e+21,0.5,0]"


def test_canonical_json_keeps_unicode_as_utf8() -> None:
    assert canonical_json({"k": "é€"}) == '{"k":"é€"}'.encode()


def test_equal_values_hash_equal_whatever_the_key_order() -> None:
    assert sha256_canonical({"a": 1, "b": {"c": 2, "d": 3}}) == sha256_canonical({"b": {"d": 3, "c": 2}, "a": 1})


def test_different_values_hash_differently() -> None:
    assert sha256_canonical({"a": 1}) != sha256_canonical({"a": 2})


def test_canonical_json_refuses_values_json_cannot_express() -> None:
    with pytest.raises(Exception):  # noqa: B017 - rfc8785 raises its own error types
        canonical_json({"x": float("nan")})


def test_sha256_text_matches_the_standard_vector() -> None:
    assert sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_streamed_digest_equals_whole_digest() -> None:
    data = bytes(range(256)) * 1000
    digest, size = sha256_chunks(data[i : i + 4096] for i in range(0, len(data), 4096))
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize(
    ("value", "valid"),
    [("a" * 64, True), ("A" * 64, False), ("a" * 63, False), ("g" * 64, False), ("", False)],
)
def test_sha256_hex_shape(value: str, valid: bool) -> None:
    assert is_sha256_hex(value) is valid


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.sampled_from([1e21, 1e-7, 2.0**53, 2.0**53 + 2, 1e16, 123456789012345680000.0, 5e-324, -0.0]),
    st.text(),
    st.sampled_from(["\x000\x00", "\x001\x00"]),  # what canonical_json's placeholders for small floats look like
    st.text(alphabet=st.characters(codec="utf-16", exclude_categories=())),  # lone surrogates included
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
        st.dictionaries(st.sampled_from(["a", "\uffff", "\U0001f600", "\ue000", "é", "B"]), inner, max_size=4),
    ),
    max_leaves=12,
)


def _outcome(dump: Callable[[Any], bytes], value: Any) -> bytes | type[BaseException]:
    try:
        return dump(value)
    except Exception as exc:  # the error type is what is compared
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(json_values)
def test_canonical_json_equals_the_reference_rfc8785_implementation(value: Any) -> None:
    # canonical_json takes a fast path through the C JSON encoder; it must never differ from the reference,
    # in output or in the error it raises.
    assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value)


def test_canonical_json_orders_keys_by_utf16_units_beyond_the_basic_plane() -> None:
    # By code point U+E000 sorts before U+1F600; by UTF-16 unit (0xD83D) it sorts after.
    assert canonical_json({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()


def test_canonical_json_refuses_integers_beyond_double_precision() -> None:
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"n": 2**53})


def test_canonical_json_read_back_hashes_to_what_was_stored() -> None:
    """A Struct number beyond 2**53 is printed as an integer; read back, it is the double again, so the stored
    record's digest can be recomputed (rather than refused as an unsafe integer)."""
    from services.common.hashing import loads_canonical

    value = {"n": 2.0**53, "m": -(2.0**60), "small": 7}
    stored = canonical_json(value)
    assert b'"n":9007199254740992' in stored  # printed as an integer
    assert canonical_json(loads_canonical(stored)) == stored
    assert type(loads_canonical(stored)["small"]) is int
