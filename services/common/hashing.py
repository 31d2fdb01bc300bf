"""The one place Custody hashes anything.

Structured values are hashed over their RFC 8785 canonical JSON, so the same value always gives the same digest on
any machine and in any language; bytes and text are hashed as they are. Never hash `str(obj)` or `repr(obj)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import rfc8785

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

_SAFE_INT = 2**53 - 1
# Python's repr and ECMAScript print floats from 1e-4 up to 2**53 the same way (fixed notation, shortest digits)
# once integral ones are written as integers; below it repr uses an exponent where ECMAScript does not before 1e-7.
_MIN_PLAIN_FLOAT = 1e-4
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) serialisation: sorted keys, no whitespace, ECMAScript number formatting, UTF-8.

    Hashing sits on every write path, so the common case goes through the C JSON encoder: its output equals JCS
    when keys sort the same by code point as by UTF-16 unit (no key beyond U+FFFF), integral floats are written
    as integers, floats below 1e-4 are spliced in already formatted, and every string is valid UTF-8. Anything
    else takes the reference implementation, which also raises its errors; tests/unit/test_hashing.py checks that
    the two agree.
    """
    small_floats: list[str] = []
    try:
        text = _ENCODE(_jcs_ready(value, small_floats))
        for index, number in enumerate(small_floats):
            # The placeholder string prints as this token; were it also in the data, it would print twice.
            token = f'"\\u0000{index}\\u0000"'
            if text.count(token) != 1:
                raise _NeedsReference
            text = text.replace(token, number)
        return text.encode("utf-8")
    except (_NeedsReference, UnicodeEncodeError):
        return rfc8785.dumps(value)


class _NeedsReference(Exception):
    pass


def _jcs_ready(value: Any, small_floats: list[str]) -> Any:
    """`value` with integral floats as ints and floats below 1e-4 as placeholder strings (their JCS text goes to
    `small_floats`); raises _NeedsReference for anything else the C encoder could print differently. Types must
    match exactly: subclasses such as enums take the reference implementation."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        raise _NeedsReference
    if kind is float:
        magnitude = abs(value)
        if not magnitude < 2**53:  # NaN, infinities and beyond-integer-precision values: rare, and subtle
            raise _NeedsReference
        if value == int(value):
            return int(value)
        if magnitude < _MIN_PLAIN_FLOAT:
            small_floats.append(rfc8785.dumps(value).decode("ascii"))
            return f"\x00{len(small_floats) - 1}\x00"
        return value
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                raise _NeedsReference
            ready = _jcs_ready(item, small_floats)
            if ready is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = ready
        return value if copy is None else copy
    if kind is list or kind is tuple:
        items = [_jcs_ready(item, small_floats) for item in value]
        return value if kind is list and all(a is b for a, b in zip(items, value, strict=True)) else items
    raise _NeedsReference


def loads_canonical(text: str | bytes) -> Any:
    """Canonical JSON read back as the values that were hashed: an integer beyond 2**53 in it was written from a
    double (a protobuf Struct number; RFC 8785 prints large integral doubles as integers), so it is read as that
    double again, and hashing the result gives the digest it was stored under."""
    return json.loads(text, parse_int=_stored_int)


def _stored_int(text: str) -> int | float:
    value = int(text)
    return value if -_SAFE_INT <= value <= _SAFE_INT else float(value)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_canonical(value: Any) -> str:
    """Digest of a JSON-compatible value; equal values hash equal whatever their key order."""
    return sha256_bytes(canonical_json(value))


def sha256_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    """Digest and length of a stream of chunks, without holding the whole stream in memory."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def is_sha256_hex(value: str) -> bool:
    return bool(SHA256_HEX.fullmatch(value))
