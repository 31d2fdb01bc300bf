"""Hostile page tokens for the per-service gRPC tests: each one is sent where a real token of a list RPC was, and
must come back INVALID_ARGUMENT with reason PAGE_TOKEN_INVALID naming page_token, and nothing else.

`resigned` plays an attacker holding a key: it keeps a real token's filter digest and swaps its cursor, signed
with whatever key it is given (the service's own, to reach the shape checks; another service's, to reach the
signature check). It spells out the token format of services/common/pagination.py on purpose: a change there
must show up here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from services.common import status


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cursor_of(token: str) -> list[Any]:
    return list(json.loads(_unb64(token.split(".")[0]))["a"])


def resigned(token: str, key: str, rpc: str, after: Any = None) -> str:
    """`token` with its cursor replaced by `after` (unchanged if None), signed with `key` for `rpc`."""
    document = json.loads(_unb64(token.split(".")[0]))
    if after is not None:
        document["a"] = after
    payload = json.dumps(document, separators=(",", ":")).encode()
    mac = hmac.new(key.encode(), rpc.encode() + b"\n" + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def flipped(token: str) -> str:
    """One character changed in the middle of the payload."""
    position = len(token.split(".")[0]) // 2
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


def truncated(token: str) -> str:
    return token[:-3]


SHAPES = (
    "string for the integer",
    "one field more",
    "one field fewer",
    "five fields",
    "nested object",
    "nested list",
    "integer beyond 2**53",
    "boolean",
    "float",
    "null",
    "NUL in a string",
    "not a list",
)


def wrong_shape(cursor: list[Any], shape: str) -> Any:
    """A cursor of the given wrong shape, made from a real one (whose first field is an integer)."""
    first, rest = cursor[0], cursor[1:]
    return {
        "string for the integer": [str(first), *rest],
        "one field more": [*cursor, 1],
        "one field fewer": cursor[:-1],
        "five fields": [*cursor, *[1] * (5 - len(cursor))],
        "nested object": [{"a": first}, *rest],
        "nested list": [[first], *rest],
        "integer beyond 2**53": [2**53 + 1, *rest],
        "boolean": [True, *rest],
        "float": [first + 0.5, *rest],
        "null": [None, *rest],
        "NUL in a string": [first, *(f"{v}\x00" if isinstance(v, str) else "x\x00" for v in rest)]
        if rest
        else [1, "\x00"],
        "not a list": {"a": first},
    }[shape]


def assert_page_token_invalid(call: Callable[[], Any]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID"), error
    assert [v.field for v in error.violations] == ["page_token"]
