"""The one JSON check for request data: depth limit and finite numbers, on decoded JSON, Structs and JSON text."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from services.common.errors import InvalidArgument
from services.common.json_limits import MAX_JSON_DEPTH, check_json, loads_json
from services.common.protomap import datetime_from_proto, struct_to_dict


def nested(levels: int) -> Any:
    """`levels` containers, alternating object and array, the outermost an object."""
    value: Any = 1
    for level in range(levels):
        value = {"k": value} if (levels - level) % 2 else [value]
    return value


def refusal(call: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        call()
    return raised.value


def test_json_nested_exactly_to_the_limit_is_accepted() -> None:
    check_json(nested(MAX_JSON_DEPTH), "data")


def test_json_one_level_past_the_limit_is_json_too_deep_with_its_path() -> None:
    error = refusal(lambda: check_json(nested(MAX_JSON_DEPTH + 1), "data"))
    assert error.reason == "JSON_TOO_DEEP"
    assert error.violations[0].field.startswith("data.k[0].k")
    assert error.metadata == {"max_depth": str(MAX_JSON_DEPTH)}


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_naming_its_path(number: float) -> None:
    error = refusal(lambda: check_json({"shapes": [{"r": 1.0}, {"r": number}]}, "spec"))
    assert (error.reason, error.violations[0].field) == ("JSON_NOT_FINITE", "spec.shapes[1].r")


def test_a_struct_is_checked_like_the_json_it_holds() -> None:
    message = struct_pb2.Struct()
    message.update({"a": {"b": [1.0, 2.0]}})
    message["a"]["b"].append(math.inf)
    error = refusal(lambda: struct_to_dict(message, "run.meta"))
    assert (error.reason, error.violations[0].field) == ("JSON_NOT_FINITE", "run.meta.a.b[2]")


def test_a_struct_nested_past_the_limit_is_json_too_deep() -> None:
    message = struct_pb2.Struct()
    message.update(nested(MAX_JSON_DEPTH + 1))
    assert refusal(lambda: struct_to_dict(message, "data")).reason == "JSON_TOO_DEEP"


@pytest.mark.parametrize("where", ["field", "list item"])
def test_a_struct_value_with_no_kind_set_is_json_value_unset_with_its_path(where: str) -> None:
    """Found by fuzzing (bench/fuzz, requests_*): protobuf's own accessors raise ValueError on such a Value."""
    message = struct_pb2.Struct()
    message.update({"a": {"b": [1.0]}})
    if where == "field":
        message["a"].fields["empty"].Clear()
        path = "run.meta.a.empty"
    else:
        message["a"]["b"].values.add()
        path = "run.meta.a.b[1]"
    error = refusal(lambda: struct_to_dict(message, "run.meta"))
    assert (error.reason, error.violations[0].field) == ("JSON_VALUE_UNSET", path)


def test_a_valid_struct_converts_to_its_dict() -> None:
    message = struct_pb2.Struct()
    message.update({"a": [1, "x", None, True]})
    assert struct_to_dict(message, "data") == {"a": [1.0, "x", None, True]}


def test_json_text_deeper_than_pythons_parser_recurses_is_json_too_deep() -> None:
    assert refusal(lambda: loads_json("[" * 100_000 + "]" * 100_000, "spec_json")).reason == "JSON_TOO_DEEP"


def test_json_text_just_past_the_limit_is_json_too_deep() -> None:
    text = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert refusal(lambda: loads_json(text, "spec_json")).reason == "JSON_TOO_DEEP"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_text_with_a_nan_or_infinity_literal_is_json_not_finite(literal: str) -> None:
    error = refusal(lambda: loads_json(f'{{"diameter_mm": {literal}}}', "spec_json"))
    assert (error.reason, error.violations[0].field) == ("JSON_NOT_FINITE", "spec_json")


def test_json_text_overflowing_to_infinity_is_json_not_finite() -> None:
    error = refusal(lambda: loads_json('{"d": 1e400}', "spec_json"))
    assert (error.reason, error.violations[0].field) == ("JSON_NOT_FINITE", "spec_json.d")


def test_text_that_is_not_json_stays_a_value_error_for_the_caller_to_name() -> None:
    with pytest.raises(ValueError):
        loads_json("{not json", "spec_json")


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(253402300800, 0), (-62135596801, 0), (0, 1_000_000_000), (0, -1), (2**62, 0)]
)
def test_a_timestamp_outside_the_protobuf_range_is_timestamp_invalid(seconds: int, nanos: int) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    error = refusal(lambda: datetime_from_proto(stamp, "created_after"))
    assert (error.reason, error.violations[0].field) == ("TIMESTAMP_INVALID", "created_after")


def test_the_extreme_valid_timestamps_convert() -> None:
    first = datetime_from_proto(timestamp_pb2.Timestamp(seconds=-62135596800), "t")
    last = datetime_from_proto(timestamp_pb2.Timestamp(seconds=253402300799, nanos=999_999_999), "t")
    assert (first.year, last.year) == (1, 9999)
