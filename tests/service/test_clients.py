"""The client factory: what every service-to-service call carries, over real gRPC."""

from __future__ import annotations

import asyncio
import json

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.common.v1 import common_pb2
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.registry import settings_class
from services.cli.state import StateLayout
from services.common import call_context
from services.common.clients import ServiceClients, channel_options, grpc_target, retry_service_config
from services.common.config import ServiceSettings, env_prefix
from services.common.protomap import service_info
from services.common.server import Service
from services.runs.access import ACCESS
from tests.support.harness import ServiceHarness, service_token


class _DeadlineRecorder(runs_pb2_grpc.RunsServiceServicer):
    def __init__(self) -> None:
        self.time_remaining: list[float | None] = []

    async def GetServiceInfo(self, request: object, context: grpc.aio.ServicerContext) -> common_pb2.ServiceInfo:
        self.time_remaining.append(context.time_remaining())
        return service_info("runs")


def _recording_runs() -> tuple[_DeadlineRecorder, object]:
    recorder = _DeadlineRecorder()

    def build(settings: ServiceSettings, tracer_provider: object) -> Service:
        return Service(
            full_name="custody.runs.v1.RunsService",
            register=lambda server: runs_pb2_grpc.add_RunsServiceServicer_to_server(recorder, server),
            access=ACCESS,
        )

    return recorder, build


def _call_as_art_studio(
    harness: ServiceHarness, layout: StateLayout, *, bind_remaining: float | None, tracer: TracerProvider | None = None
) -> common_pb2.ServiceInfo:
    async def call() -> common_pb2.ServiceInfo:
        call_context.bind(request_id="req-outgoing-42", principal=None, time_remaining=bind_remaining)
        clients = ServiceClients(
            {"runs": harness.address}, service_token(layout, "art_studio"), default_timeout_s=7, tracer_provider=tracer
        )
        try:
            return await clients.stub("runs").GetServiceInfo(runs_pb2.GetServiceInfoRequest())
        finally:
            await clients.close()

    return asyncio.run(call())


def test_outgoing_call_carries_the_callers_token_and_request_id(runs: ServiceHarness, layout: StateLayout) -> None:
    info = _call_as_art_studio(runs, layout, bind_remaining=None)
    assert info.caller.id == "service:art_studio"
    assert info.request_id == "req-outgoing-42"


def test_outgoing_call_inherits_the_incoming_deadline(layout: StateLayout) -> None:
    recorder, build = _recording_runs()
    with ServiceHarness("runs", layout, factory=build) as harness:  # type: ignore[arg-type]
        _call_as_art_studio(harness, layout, bind_remaining=2.0)
    (remaining,) = recorder.time_remaining
    # gRPC's server-side deadline rests on a cached clock that can lag by some milliseconds, never by 50.
    assert remaining is not None and 0 < remaining <= 2.05


def test_outgoing_call_without_incoming_deadline_gets_the_default(layout: StateLayout) -> None:
    recorder, build = _recording_runs()
    with ServiceHarness("runs", layout, factory=build) as harness:  # type: ignore[arg-type]
        _call_as_art_studio(harness, layout, bind_remaining=None)
    (remaining,) = recorder.time_remaining
    assert remaining is not None and 2.0 < remaining <= 7.05  # see the test above for the 50 ms


def test_outgoing_call_continues_the_callers_trace(runs: ServiceHarness, layout: StateLayout) -> None:
    client_tracer = TracerProvider()
    tracer = client_tracer.get_tracer("test")

    async def call() -> tuple[str, common_pb2.ServiceInfo]:
        with tracer.start_as_current_span("caller") as span:
            clients = ServiceClients(
                {"runs": runs.address}, service_token(layout, "art_studio"), tracer_provider=client_tracer
            )
            try:
                info = await clients.stub("runs").GetServiceInfo(runs_pb2.GetServiceInfoRequest())
            finally:
                await clients.close()
            return format(span.get_span_context().trace_id, "032x"), info

    trace_id, info = asyncio.run(call())
    assert info.trace_id == trace_id


def test_only_methods_declared_idempotent_are_retried() -> None:
    config = json.loads(retry_service_config("runs"))
    (method_config,) = config["methodConfig"]
    assert {"service": "custody.runs.v1.RunsService", "method": "GetServiceInfo"} in method_config["name"]
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_calls_are_spread_over_every_address_of_a_service(layout: StateLayout) -> None:
    first, build_first = _recording_runs()
    second, build_second = _recording_runs()
    with (
        ServiceHarness("runs", layout, factory=build_first) as one,  # type: ignore[arg-type]
        ServiceHarness("runs", layout, factory=build_second) as two,  # type: ignore[arg-type]
    ):

        async def call_many() -> None:
            target = f"ipv4:{one.address},{two.address}"
            clients = ServiceClients({"runs": target}, service_token(layout, "art_studio"))
            try:
                for _ in range(20):
                    await clients.stub("runs").GetServiceInfo(runs_pb2.GetServiceInfoRequest())
            finally:
                await clients.close()

        asyncio.run(call_many())
    assert len(first.time_remaining) > 0 and len(second.time_remaining) > 0
    assert len(first.time_remaining) + len(second.time_remaining) == 20


def test_a_configured_list_of_replicas_is_called_round_robin_and_a_stopped_one_is_skipped(
    layout: StateLayout,
) -> None:
    """`<PEER>_ADDRESS: A,B` as users write it (config.address_list): calls reach both replicas; once one stops, every
    later call goes to the other and none fails."""
    first, build_first = _recording_runs()
    second, build_second = _recording_runs()
    one = ServiceHarness("runs", layout, factory=build_first).__enter__()  # type: ignore[arg-type]
    stopped = False
    try:
        with ServiceHarness("runs", layout, factory=build_second) as two:  # type: ignore[arg-type]
            prefix = env_prefix("art_studio")
            settings = settings_class("art_studio").load(
                layout.service_config("art_studio"),
                {prefix + "STATE_DIR": str(layout.root), prefix + "RUNS_ADDRESS": f"{one.address}, {two.address}"},
            )

            async def calls(count: int, clients: ServiceClients) -> None:
                for _ in range(count):
                    await clients.stub("runs").GetServiceInfo(runs_pb2.GetServiceInfoRequest())

            async def scenario() -> tuple[int, int]:
                nonlocal stopped
                clients = ServiceClients.for_service(settings, None)
                try:
                    await calls(10, clients)
                    spread = (len(first.time_remaining), len(second.time_remaining))
                    await asyncio.to_thread(one.__exit__, None, None, None)
                    stopped = True
                    await calls(10, clients)
                    return spread
                finally:
                    await clients.close()

            spread = asyncio.run(scenario())
    finally:
        if not stopped:
            one.__exit__(None, None, None)
    assert spread[0] > 0 and spread[1] > 0 and sum(spread) == 10
    assert len(first.time_remaining) == spread[0] and len(second.time_remaining) == spread[1] + 10


def test_a_list_of_replicas_becomes_grpcs_static_target() -> None:
    assert grpc_target("10.0.0.1:50052, 10.0.0.2:50052") == "ipv4:10.0.0.1:50052,10.0.0.2:50052"
    assert grpc_target("[::1]:50052,[::1]:50062") == "ipv6:[::1]:50052,[::1]:50062"
    assert grpc_target("runs.custody.svc:50052") == "runs.custody.svc:50052"
    assert grpc_target("ipv4:10.0.0.1:1,10.0.0.2:2") == "ipv4:10.0.0.1:1,10.0.0.2:2"
    options = dict(channel_options("runs", 1024, "10.0.0.1:50052,10.0.0.2:50052"))
    assert options["grpc.default_authority"] == "10.0.0.1:50052"
    assert "grpc.default_authority" not in dict(channel_options("runs", 1024, "runs:50052"))
