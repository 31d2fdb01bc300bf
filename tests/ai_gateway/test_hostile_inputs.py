"""Hostile gateway requests the generative test found reaching INTERNAL: each now has its reason."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from custody.ai_gateway.v1 import gateway_pb2
from services.cli.state import StateLayout
from tests.ai_gateway.conftest import GatewayFactory, as_operator, generate, rpc_error, stream, stub


def test_a_response_schema_nested_deeper_than_json_parses_is_json_too_deep(
    start_gateway: GatewayFactory, layout: StateLayout
) -> None:
    gateway = start_gateway()
    for call in (generate, stream):
        error = rpc_error(lambda: call(gateway, layout, response_json_schema="[" * 5000))  # noqa: B023
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_TOO_DEEP")
        assert error.violations[0].field == "response_json_schema"


def test_a_response_schema_with_a_nan_literal_is_json_not_finite(
    start_gateway: GatewayFactory, layout: StateLayout
) -> None:
    gateway = start_gateway()
    error = rpc_error(lambda: generate(gateway, layout, response_json_schema='{"maximum": NaN}'))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_NOT_FINITE")


def test_a_list_filter_time_beyond_year_9999_is_timestamp_invalid(
    start_gateway: GatewayFactory, layout: StateLayout
) -> None:
    gateway = start_gateway()
    request = gateway_pb2.ListCallsRequest(start_time=timestamp_pb2.Timestamp(seconds=2**40))
    error = rpc_error(lambda: stub(gateway).ListCalls(request, metadata=as_operator(layout), timeout=10))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TIMESTAMP_INVALID")
    assert [v.field for v in error.violations] == ["start_time"]
