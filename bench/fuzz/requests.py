"""Request decoding of every servicer, fuzzed in process: bytes -> the RPC's request message (FromString, as
grpc's deserializer) -> the real servicer method, whose proto -> domain translation (services/*/convert.py and the
checks in the servicer) runs up to the one domain call, where a stand-in domain stops the call.

Methods are read from the service descriptor, so a new RPC is fuzzed without being listed here. The input's first
byte picks the method; a client-streaming method's messages are the rest cut into frames (a length byte, then
that many bytes; the last frame takes what is left).

Outcomes, as call handling (services/common/call_handling.py) would answer them:
- accepted: the servicer reached the domain (`Reached`), or answered by itself (CompileSpec, ValidateSvg and
  GetServiceInfo need no domain) with a response that serialises;
- expected refusal: FromString raises DecodeError (REQUEST_MALFORMED), or the servicer raises a CustodyError
  (mapped to its status, INVALID_ARGUMENT for every decoding problem);
- crash: any other exception, which call handling would answer INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from services.common import call_context
from services.common.errors import CustodyError
from services.common.identity import MIGRATOR_ROLE, OPERATOR_ROLE, REVIEWER_ROLE, Principal, PrincipalKind

CALLER = Principal("human:fuzz", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE, REVIEWER_ROLE, MIGRATOR_ROLE}))


class Reached(Exception):
    """The servicer handed the decoded request to the domain: decoding accepted it."""


class _Domain:
    """Stands in for every domain object a servicer holds: any use of it (an attribute's call, iteration, a
    nested attribute) raises Reached, after Python has evaluated the call's arguments, the converted request."""

    def __getattr__(self, name: str) -> Any:
        return _Domain()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Reached

    def __iter__(self) -> Any:
        raise Reached

    def __bool__(self) -> bool:
        raise Reached


async def _inline(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def _drive(awaitable: Any) -> Any:
    """Runs a coroutine that never waits on I/O to its end, with no event loop (a loop per input costs more than
    the decoding it runs)."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("the servicer waited on real I/O before reaching the domain")


async def _messages(items: list[Message]) -> AsyncIterator[Message]:
    for item in items:
        yield item


async def _collect(stream: AsyncIterator[Message]) -> list[Message]:
    return [item async for item in stream]


def frames(data: bytes) -> list[bytes]:
    """A client stream's messages: length byte, then that many bytes; the last frame takes the rest."""
    found, at = [], 0
    while at < len(data):
        length = data[at]
        found.append(data[at + 1 : at + 1 + length])
        at += 1 + length
    return found or [b""]


class ServiceTarget:
    """One service's request decoding as a fuzz target."""

    def __init__(self, service: str, grpc_module: ModuleType, servicer_class: type, descriptor_name: str) -> None:
        self.service = service
        self._servicer_class = servicer_class
        service_descriptor = grpc_module.DESCRIPTOR.services_by_name[descriptor_name]
        self.methods: list[MethodDescriptor] = sorted(service_descriptor.methods, key=lambda m: m.name)
        self._request = {m.name: message_factory.GetMessageClass(m.input_type) for m in self.methods}
        self._servicer: Any = None

    def request_class(self, method: MethodDescriptor) -> type[Message]:
        return self._request[method.name]

    def _ready(self) -> Any:
        if self._servicer is None:
            parameters = len(inspect.signature(self._servicer_class).parameters)
            self._servicer = self._servicer_class(*(_Domain() for _ in range(parameters)))
        return self._servicer

    def __call__(self, data: bytes) -> None:
        self.outcome(data)

    def outcome(self, data: bytes) -> str:
        """ "accepted", "malformed" (DecodeError) or "refused: REASON" (a CustodyError); raises for a crash.

        Each input runs in a context of its own with one caller bound, and worker threads run inline for its
        duration only, so the process calling this (a test, not only the fuzz child) keeps its own state."""
        threads = asyncio.to_thread
        asyncio.to_thread = _inline  # type: ignore[assignment]
        try:
            return contextvars.Context().run(self._outcome, data)
        finally:
            asyncio.to_thread = threads

    def _outcome(self, data: bytes) -> str:
        call_context.bind(request_id="fuzz", principal=CALLER, time_remaining=None)
        servicer = self._ready()
        if not data:
            return "malformed"
        method = self.methods[data[0] % len(self.methods)]
        parse = self._request[method.name].FromString
        try:
            requests = [parse(frame) for frame in frames(data[1:])] if method.client_streaming else [parse(data[1:])]
        except DecodeError:
            return "malformed"
        handler = getattr(servicer, method.name)
        argument: Any = _messages(requests) if method.client_streaming else requests[0]
        try:
            if method.server_streaming:
                answers = _drive(_collect(handler(argument, None)))
            else:
                answers = [_drive(handler(argument, None))]
        except Reached:
            return "accepted"
        except CustodyError as refused:
            return f"refused: {refused.reason}"
        for answer in answers:
            answer.SerializeToString()
        return "accepted"


# service -> (generated contract module, servicer module, servicer class, service in the descriptor)
SERVICERS = {
    "runs": ("custody.runs.v1.runs_pb2", "services.runs.servicer", "RunsServicer", "RunsService"),
    "lineage": ("custody.lineage.v1.lineage_pb2", "services.lineage.servicer", "LineageServicer", "LineageService"),
    "ai_gateway": (
        "custody.ai_gateway.v1.gateway_pb2",
        "services.ai_gateway.servicer",
        "AiGatewayServicer",
        "AiGatewayService",
    ),
    "art_studio": (
        "custody.art_studio.v1.art_studio_pb2",
        "services.art_studio.servicer",
        "ArtStudioServicer",
        "ArtStudioService",
    ),
}


def service_target(service: str) -> ServiceTarget:
    """One service's target, importing that service only (the fuzz child instruments what it imports)."""
    contract, module, servicer, descriptor = SERVICERS[service]
    servicer_class = getattr(importlib.import_module(module), servicer)
    return ServiceTarget(service, importlib.import_module(contract), servicer_class, descriptor)
