"""The one place Custody hashes anything.

Structured values are hashed over their RFC 8785 canonical JSON, so the same value always gives the same digest on
any machine and in any language; bytes and text are hashed as they are. Never hash `str(obj)` or `repr(obj)`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import rfc8785

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) serialisation: sorted keys, no whitespace, ECMAScript number formatting, UTF-8."""
    return rfc8785.dumps(value)


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
