"""What JSON a request may carry, checked in one place: nested at most MAX_JSON_DEPTH levels, and every number
finite. It applies to JSON in protobuf Struct/Value fields and to JSON text in string or bytes fields.

Why: Python's json module recurses once per level and raises RecursionError (an INTERNAL) on input a few thousand
levels deep, and NaN or Infinity have no JSON (RFC 8785 canonical JSON refuses them), so a stored value holding one
could never be hashed or returned; and a protobuf Value with none of its kinds set (valid on the wire) is no JSON
value at all, protobuf's own accessors raise ValueError on it. All three are refused as INVALID_ARGUMENT with the
field's path, before any domain code sees the value. The walk is iterative, so checking cannot itself run out of stack.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from google.protobuf import struct_pb2

from services.common.errors import FieldViolation, InvalidArgument

# Containers (objects and arrays) nested inside each other, the outermost counting as 1. Every JSON document the
# suite defines (rosette specs, lineage data, type schemas, run summaries) stays under 12; protobuf's own parser
# stops at 100 message levels, which is about 48 levels of Struct.
MAX_JSON_DEPTH = 32


def check_json(value: Any, field: str) -> None:
    """Raises InvalidArgument (JSON_TOO_DEEP or JSON_NOT_FINITE) naming the path inside `field` of the problem.

    `value` is decoded JSON (dicts, lists, scalars) or a google.protobuf Struct/ListValue, walked the same way.
    """
    for path, depth, item in _walk(value, field):
        _check_item(field, path, depth, item)


def check_struct(message: struct_pb2.Struct | struct_pb2.ListValue, field: str) -> None:
    """check_json for a request's Struct, which can hold what JSON text cannot: a google.protobuf.Value with none
    of its kinds set (valid on the wire; protobuf's own accessors raise ValueError on it), refused as
    JSON_VALUE_UNSET naming its path."""
    for path, depth, item in _walk(message, field):
        if isinstance(item, struct_pb2.Value):  # the walk leaves a Value with no kind as it is
            raise InvalidArgument(
                "JSON_VALUE_UNSET",
                f"{path} is a google.protobuf.Value with no kind set, which is no JSON value",
                violations=[
                    FieldViolation(
                        path, "set one of null_value, number_value, string_value, bool_value, struct_value, list_value"
                    )
                ],
            )
        _check_item(field, path, depth, item)


def _check_item(field: str, path: str, depth: int, item: Any) -> None:
    if depth > MAX_JSON_DEPTH:
        raise _too_deep(field, path)
    if isinstance(item, float) and not math.isfinite(item):
        raise InvalidArgument(
            "JSON_NOT_FINITE",
            f"{path} is {item}; JSON numbers must be finite (no NaN or Infinity)",
            violations=[FieldViolation(path, "must be a finite number")],
        )


def loads_json(text: str | bytes, field: str) -> Any:
    """json.loads for request data, with check_json's limits.

    Raises ValueError (json.JSONDecodeError or UnicodeDecodeError) for text that is not JSON, so each caller keeps
    its own reason for that; InvalidArgument for JSON that is too deep or holds NaN/Infinity literals.
    """
    try:
        document = json.loads(text, parse_constant=_refuse_constant(field))
    except RecursionError:
        raise _too_deep(field, field) from None
    check_json(document, field)
    return document


def _refuse_constant(field: str) -> Any:
    def refuse(name: str) -> Any:
        raise InvalidArgument(
            "JSON_NOT_FINITE",
            f"{field} holds {name}, which is not JSON; numbers must be finite",
            violations=[FieldViolation(field, "must be JSON with finite numbers (no NaN or Infinity)")],
        )

    return refuse


def _too_deep(field: str, path: str) -> InvalidArgument:
    return InvalidArgument(
        "JSON_TOO_DEEP",
        f"{field} nests more than {MAX_JSON_DEPTH} levels of objects and arrays (at {path})",
        violations=[FieldViolation(path, f"at most {MAX_JSON_DEPTH} levels of nesting")],
        metadata={"max_depth": str(MAX_JSON_DEPTH)},
    )


def _walk(value: Any, field: str) -> Iterator[tuple[str, int, Any]]:
    """(path, depth, value) of every value: depth counts the containers around it plus itself if a container."""
    stack: list[tuple[str, int, Any]] = [(field, 0, value)]
    while stack:
        path, outer, item = stack.pop()
        if isinstance(item, dict | struct_pb2.Struct):
            depth = outer + 1
            yield path, depth, item
            if depth <= MAX_JSON_DEPTH:
                pairs = item.fields.items() if isinstance(item, struct_pb2.Struct) else item.items()
                stack.extend((f"{path}.{key}", depth, _unwrapped(child)) for key, child in pairs)
        elif isinstance(item, list | tuple | struct_pb2.ListValue):
            depth = outer + 1
            yield path, depth, item
            if depth <= MAX_JSON_DEPTH:
                children = item.values if isinstance(item, struct_pb2.ListValue) else item
                stack.extend((f"{path}[{index}]", depth, _unwrapped(child)) for index, child in enumerate(children))
        else:
            yield path, outer, item


def _unwrapped(child: Any) -> Any:
    """A Struct's or ListValue's member as the JSON value it holds; a Value with no kind set stays as it is."""
    if not isinstance(child, struct_pb2.Value):
        return child
    kind = child.WhichOneof("kind")
    return child if kind is None else getattr(child, kind)
