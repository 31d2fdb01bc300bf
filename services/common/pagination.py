"""Keyset pagination with opaque page tokens (AIP-158).

A token carries the sort key of the last item returned and a digest of the request's filters, so a token used
with different filters is refused instead of silently returning a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import canonical_json, sha256_canonical

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """0 means the default; negative is an error; above the maximum is clamped (as AIP-158 advises)."""
    if requested < 0:
        raise InvalidArgument(
            "PAGE_SIZE_INVALID",
            f"page_size must be >= 0 (got {requested})",
            violations=[FieldViolation("page_size", "must be >= 0")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class PageCursor:
    """Where the previous page ended: the sort key of its last item."""

    after: list[Any]


def encode_token(after: list[Any], filters: dict[str, Any]) -> str:
    payload = {"a": after, "f": sha256_canonical(filters)[:16]}
    return base64.urlsafe_b64encode(canonical_json(payload)).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, Any]) -> PageCursor | None:
    """None for the first page; InvalidArgument for a token that is malformed or from another query."""
    if not token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = payload["a"], payload["f"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):  # json recurses per nesting level
        raise _bad_token("page_token is not one this service issued") from None
    if not isinstance(after, list) or digest != sha256_canonical(filters)[:16]:
        raise _bad_token("page_token belongs to a request with different filters; start again without it")
    return PageCursor(after)


def _bad_token(message: str) -> InvalidArgument:
    return InvalidArgument("PAGE_TOKEN_INVALID", message, violations=[FieldViolation("page_token", message)])
