"""Authentication, authorization, request ids and error mapping around every RPC, over real gRPC."""

from __future__ import annotations

import asyncio
import re
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout
from services.common import status
from services.common.config import ServiceSettings
from services.common.errors import FieldViolation, InvalidArgument
from services.common.protomap import service_info
from services.common.server import Service
from services.runs.access import ACCESS
from tests.support.harness import ServiceHarness, bearer, operator_token, service_token
from tests.support.metrics import histogram_count, in_memory_reader

GET_INFO = runs_pb2.GetServiceInfoRequest()


def call_info(harness: ServiceHarness, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[object, dict[str, str]]:
    stub = runs_pb2_grpc.RunsServiceStub(harness.channel())
    response, call = stub.GetServiceInfo.with_call(GET_INFO, metadata=metadata, timeout=10)
    return response, dict(call.trailing_metadata())


def rpc_error(harness: ServiceHarness, metadata: tuple[tuple[str, str], ...] = ()) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call_info(harness, metadata)
    return status.decode(raised.value)


def test_call_without_token_is_unauthenticated(runs: ServiceHarness) -> None:
    error = rpc_error(runs)
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "TOKEN_MISSING"
    assert error.domain == "runs.custody"


def test_call_with_unknown_token_is_unauthenticated(runs: ServiceHarness) -> None:
    error = rpc_error(runs, bearer("cst_not-a-real-token"))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_non_bearer_authorization_is_unauthenticated(runs: ServiceHarness, layout: StateLayout) -> None:
    error = rpc_error(runs, (("authorization", f"Basic {operator_token(layout)}"),))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


def test_operator_is_authenticated_as_a_human_reviewer(runs: ServiceHarness, layout: StateLayout) -> None:
    info, _ = call_info(runs, bearer(operator_token(layout)))
    assert info.service == "custody.runs.v1.RunsService"
    assert info.caller.id == "human:operator"
    assert info.caller.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    assert "reviewer" in info.caller.roles


def test_service_in_the_call_graph_is_allowed(runs: ServiceHarness, layout: StateLayout) -> None:
    info, _ = call_info(runs, bearer(service_token(layout, "art_studio")))
    assert info.caller.id == "service:art_studio"
    assert info.caller.kind == common_pb2.PRINCIPAL_KIND_SERVICE


def test_service_outside_the_call_graph_is_permission_denied(runs: ServiceHarness, layout: StateLayout) -> None:
    error = rpc_error(runs, bearer(service_token(layout, "lineage")))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")
    assert "service:lineage" in error.message


def test_client_request_id_is_returned_in_response_metadata(runs: ServiceHarness, layout: StateLayout) -> None:
    info, headers = call_info(runs, (*bearer(operator_token(layout)), ("x-request-id", "req-from-client-1")))
    assert headers["x-request-id"] == "req-from-client-1"
    assert info.request_id == "req-from-client-1"


def test_request_id_is_generated_when_absent(runs: ServiceHarness, layout: StateLayout) -> None:
    info, headers = call_info(runs, bearer(operator_token(layout)))
    assert re.fullmatch(r"req-[0-9a-f]{32}", headers["x-request-id"])
    assert info.request_id == headers["x-request-id"]


def test_request_id_is_returned_even_when_the_call_is_refused(runs: ServiceHarness) -> None:
    stub = runs_pb2_grpc.RunsServiceStub(runs.channel())
    call = stub.GetServiceInfo.future(GET_INFO, metadata=(("x-request-id", "req-refused-7"),), timeout=10)
    with pytest.raises(grpc.RpcError):
        call.result()
    assert dict(call.trailing_metadata())["x-request-id"] == "req-refused-7"


def test_request_id_is_taken_from_baggage_without_header(runs: ServiceHarness, layout: StateLayout) -> None:
    carrier: dict[str, str] = {}
    token = otel_context.attach(baggage.set_baggage("request_id", "req-via-baggage"))
    try:
        propagate.inject(carrier)
    finally:
        otel_context.detach(token)
    info, headers = call_info(runs, (*bearer(operator_token(layout)), *carrier.items()))
    assert info.request_id == headers["x-request-id"] == "req-via-baggage"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "../etc/passwd"])
def test_malformed_request_id_is_invalid_argument(runs: ServiceHarness, layout: StateLayout, bad: str) -> None:
    error = rpc_error(runs, (*bearer(operator_token(layout)), ("x-request-id", bad)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_INVALID")


def test_health_and_reflection_need_no_token(runs: ServiceHarness) -> None:
    health = health_pb2_grpc.HealthStub(runs.channel())
    for name in ("", "custody.runs.v1.RunsService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


class _FailingServicer(runs_pb2_grpc.RunsServiceServicer):
    """Raises whatever the test planted, as a buggy or validating servicer would."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.deadlines: list[float | None] = []

    async def GetServiceInfo(self, request: object, context: grpc.aio.ServicerContext) -> common_pb2.ServiceInfo:
        raise self.error


def _failing(error: BaseException) -> object:
    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        servicer = _FailingServicer(error)
        return Service(
            full_name="custody.runs.v1.RunsService",
            register=lambda server: runs_pb2_grpc.add_RunsServiceServicer_to_server(servicer, server),
            access=ACCESS,
        )

    return build


def test_unexpected_error_is_internal_without_internal_text(layout: StateLayout) -> None:
    planted = RuntimeError("db password=hunter2 at /srv/secret/path")
    with ServiceHarness("runs", layout, factory=_failing(planted)) as harness:  # type: ignore[arg-type]
        error = rpc_error(harness, bearer(operator_token(layout)))
    assert error.code is grpc.StatusCode.INTERNAL
    assert "hunter2" not in error.message and "/srv/secret" not in error.message
    assert error.message == status.INTERNAL_MESSAGE


def test_domain_error_becomes_status_with_error_info_and_field_violations(layout: StateLayout) -> None:
    planted = InvalidArgument(
        "SPEC_INVALID", "the spec has 2 problems", violations=[FieldViolation("shapes[0].r", "must be > 0")]
    )
    with ServiceHarness("runs", layout, factory=_failing(planted)) as harness:  # type: ignore[arg-type]
        error = rpc_error(harness, bearer(operator_token(layout)))
    assert (error.code, error.reason, error.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SPEC_INVALID",
        "the spec has 2 problems",
    )
    assert error.violations == (FieldViolation("shapes[0].r", "must be > 0"),)


def _recorded(code: grpc.StatusCode, method: str = "GetServiceInfo") -> int:
    return histogram_count(
        "rpc.server.call.duration",
        **{"rpc.service": "custody.runs.v1.RunsService", "rpc.method": method, "rpc.grpc.status_code": code.value[0]},
    )


@pytest.mark.parametrize(
    ("planted", "code"),
    [
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
        (InvalidArgument("SPEC_INVALID", "bad spec"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_an_rpc_that_fails_is_measured_with_the_status_code_it_answered(
    layout: StateLayout, planted: BaseException, code: grpc.StatusCode
) -> None:
    in_memory_reader()
    before, ok_before = _recorded(code), _recorded(grpc.StatusCode.OK)
    with ServiceHarness("runs", layout, factory=_failing(planted)) as harness:  # type: ignore[arg-type]
        assert rpc_error(harness, bearer(operator_token(layout))).code is code
    assert (_recorded(code) - before, _recorded(grpc.StatusCode.OK) - ok_before) == (1, 0)


def test_health_checks_are_not_measured(runs: ServiceHarness) -> None:
    in_memory_reader()
    before = histogram_count("rpc.server.call.duration", **{"rpc.method": "Check"})
    health_pb2_grpc.HealthStub(runs.channel()).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert histogram_count("rpc.server.call.duration", **{"rpc.method": "Check"}) == before


def test_rpcs_are_traced_and_health_checks_are_not(runs: ServiceHarness, layout: StateLayout) -> None:
    info, _ = call_info(runs, bearer(operator_token(layout)))
    health_pb2_grpc.HealthStub(runs.channel()).Check(health_pb2.HealthCheckRequest(), timeout=5)
    names = [span.name for span in _finished_spans(runs, 1)]
    assert names == ["/custody.runs.v1.RunsService/GetServiceInfo"]
    assert format(runs.spans.get_finished_spans()[0].context.trace_id, "032x") == info.trace_id


def _finished_spans(harness: ServiceHarness, count: int) -> tuple[ReadableSpan, ...]:
    """The server ends its span just after the client has its answer: wait for it (bounded)."""
    deadline = time.monotonic() + 5
    while len(spans := harness.spans.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return tuple(spans)


def test_a_refused_rpc_ends_its_span_with_the_error_status(runs: ServiceHarness) -> None:
    rpc_error(runs)  # no token: UNAUTHENTICATED
    (span,) = _finished_spans(runs, 1)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_the_server_span_continues_the_callers_trace(runs: ServiceHarness, layout: StateLayout) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call_info(runs, (*bearer(operator_token(layout)), ("traceparent", traceparent)))
    (span,) = _finished_spans(runs, 1)
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"


def test_graceful_stop_reports_not_serving(layout: StateLayout) -> None:
    with ServiceHarness("runs", layout) as harness:
        running = harness.running
        assert running is not None
        harness.run(running.health.enter_graceful_shutdown)
        answer = health_pb2_grpc.HealthStub(harness.channel()).Check(
            health_pb2.HealthCheckRequest(service="custody.runs.v1.RunsService"), timeout=5
        )
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_in_flight_call_completes_during_graceful_stop(layout: StateLayout) -> None:
    class SlowServicer(runs_pb2_grpc.RunsServiceServicer):
        async def GetServiceInfo(self, request: object, context: grpc.aio.ServicerContext) -> common_pb2.ServiceInfo:
            await asyncio.sleep(0.5)
            return service_info("runs")

    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        servicer = SlowServicer()
        return Service(
            full_name="custody.runs.v1.RunsService",
            register=lambda server: runs_pb2_grpc.add_RunsServiceServicer_to_server(servicer, server),
            access=ACCESS,
        )

    with ServiceHarness("runs", layout, factory=build) as harness:  # type: ignore[arg-type]
        stub = runs_pb2_grpc.RunsServiceStub(harness.channel())
        pending = stub.GetServiceInfo.future(GET_INFO, metadata=bearer(operator_token(layout)), timeout=10)
        asyncio.run(asyncio.sleep(0.1))
        harness.stop(grace_s=5)
        assert pending.result().caller.id == "human:operator"
