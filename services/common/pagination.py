"""Keyset pagination with opaque, signed page tokens (AIP-158).

A token carries the sort key of the last item returned and a digest of the request's filters, and is signed
(HMAC-SHA256) with the service's page-token key over the list RPC that issued it. So a token is refused with
PAGE_TOKEN_INVALID, before anything in it is trusted, when any byte was altered or forged, when another service
or deployment (another key) issued it, or when another list RPC of the same service issued it; a token replayed
with different filters is refused too, instead of silently returning a wrong page. After the signature, the
cursor's shape (length, and each field's type and range) is checked against what that RPC issues, so a store
only ever receives a sort key of the shape it produced.

The key is the `page_token_key` setting of each stateful service (a secret: environment or config file). Without
one, each process draws a random key at start: its tokens then stop working when it restarts and are refused by
its replicas, so deployments set the key (`custody init` writes one into each service's config).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import SecretStr

from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import canonical_json, sha256_canonical

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The shortest accepted key, in bytes (256 bits, as HMAC-SHA256 asks for).
MIN_KEY_BYTES = 32
# Longer than any token a list RPC issues; a longer one is refused before it is decoded.
MAX_TOKEN_CHARS = 4096
MAX_CURSOR_STRING = 256
# Cursor integers are those RFC 8785 JSON represents exactly (|n| < 2**53; microsecond timestamps and row ids
# fit), which database BIGINTs hold too.
MAX_CURSOR_INT = 2**53 - 1

log = logging.getLogger("custody.pagination")


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


T = TypeVar("T")


@dataclass(frozen=True)
class PagedList:
    """One list RPC's tokens: the RPC they are valid for, and the types of its cursor's fields, in order (`int`
    for an integer JSON holds exactly, `str` for a string of at most 256 characters without NUL)."""

    rpc: str
    cursor: tuple[type, ...]

    def matches(self, after: Sequence[Any]) -> bool:
        return len(after) == len(self.cursor) and all(map(_field_matches, self.cursor, after))


def _field_matches(expected: type, value: Any) -> bool:
    if expected is int:  # bool is an int to Python, never to a database column
        return type(value) is int and -MAX_CURSOR_INT <= value <= MAX_CURSOR_INT
    if expected is str:
        return type(value) is str and len(value) <= MAX_CURSOR_STRING and "\x00" not in value
    return False


class PageTokens:
    """Issues and checks one service's page tokens with its key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a page-token key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def ephemeral(cls) -> PageTokens:
        """A random key for this process only: its tokens do not survive a restart or reach another replica."""
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    @classmethod
    def configured(cls, key: SecretStr | None, service: str) -> PageTokens:
        """The configured key, else an ephemeral one (with a warning saying what that costs)."""
        if key is None:
            log.warning(
                "no page_token_key configured for %s: using a random key for this process; page tokens will not "
                "survive a restart or work across replicas (set CUSTODY_%s_PAGE_TOKEN_KEY)",
                service,
                service.upper(),
            )
            return cls.ephemeral()
        return cls(key.get_secret_value().encode())

    def encode(self, listing: PagedList, after: Sequence[Any], filters: Mapping[str, Any]) -> str:
        after = list(after)
        if not listing.matches(after):
            raise ValueError(f"{listing.rpc} issues cursors of types {listing.cursor}, not {after!r}")
        payload = canonical_json({"a": after, "f": _filters_digest(filters)})
        return f"{_b64encode(payload)}.{_b64encode(self._sign(listing, payload))}"

    def page(
        self,
        listing: PagedList,
        fetched: Sequence[T],
        size: int,
        filters: Mapping[str, Any],
        sort_key: Callable[[T], Sequence[Any]],
    ) -> tuple[list[T], str]:
        """A page from `size + 1` fetched items, and the token of the next one: the extra item only says there is
        a next page, which starts after the sort key of this page's last item ("" when there is none)."""
        if len(fetched) <= size:
            return list(fetched), ""
        return list(fetched[:size]), self.encode(listing, sort_key(fetched[size - 1]), filters)

    def decode(self, listing: PagedList, token: str, filters: Mapping[str, Any]) -> PageCursor | None:
        """None for the first page; InvalidArgument (PAGE_TOKEN_INVALID) for any token this service did not
        issue for this RPC, unaltered, with these filters."""
        if not token:
            return None
        encoded_payload, dot, encoded_mac = token.partition(".")
        if len(token) > MAX_TOKEN_CHARS or not dot:
            raise _bad_token("page_token is not one this service issued; start again without it")
        try:
            payload, mac = _b64decode(encoded_payload), _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise _bad_token("page_token is not one this service issued; start again without it") from None
        if not hmac.compare_digest(mac, self._sign(listing, payload)):
            raise _bad_token(f"page_token was not issued by this service for {listing.rpc}; start again without it")
        try:
            document = json.loads(payload)
            after, digest = document["a"], document["f"]
        except (ValueError, KeyError, TypeError):  # only a key holder could sign this, but never trust it blindly
            raise _bad_token("page_token is not one this service issued; start again without it") from None
        if digest != _filters_digest(filters):
            raise _bad_token("page_token belongs to a request with different filters; start again without it")
        if not isinstance(after, list) or not listing.matches(after):
            raise _bad_token(f"page_token does not hold a {listing.rpc} cursor; start again without it")
        return PageCursor(after)

    def _sign(self, listing: PagedList, payload: bytes) -> bytes:
        return hmac.new(self._key, listing.rpc.encode() + b"\n" + payload, hashlib.sha256).digest()


def _filters_digest(filters: Mapping[str, Any]) -> str:
    return sha256_canonical(dict(filters))[:32]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, and only the canonical spelling of the bytes (base64 leaves spare bits
    in the last character, and a lenient decoder skips stray characters; either would let an altered token
    decode to the bytes that were signed)."""
    data = base64.b64decode(text.encode("ascii") + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64encode(data) != text:
        raise ValueError("not the canonical encoding")
    return data


def _bad_token(message: str) -> InvalidArgument:
    return InvalidArgument("PAGE_TOKEN_INVALID", message, violations=[FieldViolation("page_token", message)])
