"""Canonical hashing: RFC 8785 JSON and sha256, the only hashing in the repository."""

from __future__ import annotations

import hashlib

import pytest

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
