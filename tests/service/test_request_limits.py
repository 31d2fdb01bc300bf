"""Request bytes no parser may choke on: protobuf nested past its limit, corrupt wire data, page tokens nested past
what Python's json can parse. Each is INVALID_ARGUMENT with its reason, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import grpc
import pytest

from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout
from services.common import status
from tests.runs.conftest import run_input
from tests.support.fuzz import deep_bytes, length_delimited
from tests.support.harness import ServiceHarness, bearer, operator_token

CREATE_RUN = "/custody.runs.v1.RunsService/CreateRun"
UPLOAD = "/custody.runs.v1.RunsService/UploadAttachment"
META = runs_pb2.RunInput.DESCRIPTOR.fields_by_name["meta"]


def raw_call(harness: ServiceHarness, path: str, raw: bytes, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    method = harness.channel().unary_unary(path, request_serializer=lambda b: b, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        method(raw, metadata=metadata, timeout=10)
    return raised.value


def deep_create_run(levels: int) -> bytes:
    """CreateRunRequest{run{meta: a Struct nested `levels` ListValues deep}}, written byte by byte."""
    return length_delimited(1, length_delimited(META.number, deep_bytes(levels, META)))


def test_a_request_nested_past_the_protobuf_limit_is_request_malformed(
    runs: ServiceHarness, layout: StateLayout
) -> None:
    error = status.decode(raw_call(runs, CREATE_RUN, deep_create_run(200), bearer(operator_token(layout))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_MALFORMED")
    assert "100 levels" in error.message


def test_corrupt_request_bytes_are_request_malformed(runs: ServiceHarness, layout: StateLayout) -> None:
    claims_4_gib = b"\x0a\xff\xff\xff\xff\x0f"
    error = status.decode(raw_call(runs, CREATE_RUN, claims_4_gib, bearer(operator_token(layout))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_MALFORMED")


def test_a_malformed_request_is_authenticated_before_it_is_refused(runs: ServiceHarness) -> None:
    error = status.decode(raw_call(runs, CREATE_RUN, deep_create_run(200), ()))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


def test_a_malformed_message_inside_an_upload_stream_is_request_malformed(
    runs: ServiceHarness, layout: StateLayout
) -> None:
    operator = bearer(operator_token(layout))
    run = runs_pb2_grpc.RunsServiceStub(runs.channel()).CreateRun(
        runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=operator, timeout=10
    )
    header = runs_pb2.UploadAttachmentRequest(
        header=runs_pb2.AttachmentHeader(run=run.name, kind="other", filename="notes.txt")
    )

    def messages() -> Iterator[bytes]:
        yield header.SerializeToString()
        yield runs_pb2.UploadAttachmentRequest(chunk=b"first bytes").SerializeToString()
        yield b"\x12\xff\xff\xff\xff\x0f"  # a chunk claiming 4 GiB

    method = runs.channel().stream_unary(UPLOAD, request_serializer=lambda b: b, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        method(messages(), metadata=operator, timeout=10)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_MALFORMED")


def test_a_page_token_nested_past_what_json_parses_is_page_token_invalid(
    runs: ServiceHarness, layout: StateLayout
) -> None:
    token = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode().rstrip("=")
    stub = runs_pb2_grpc.RunsServiceStub(runs.channel())
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListRuns(runs_pb2.ListRunsRequest(page_token=token), metadata=bearer(operator_token(layout)), timeout=10)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")
