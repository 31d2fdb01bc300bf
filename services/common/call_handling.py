"""What happens around every RPC a Custody service serves, in one place:

request id (x-request-id metadata, else OpenTelemetry baggage, else generated) bound to the call and returned
in the response metadata (trailers of unary calls, headers of streams); the server span, a child of the caller's
W3C trace context, named for the method and ended with its status code; authentication of the bearer token and,
with TLS, of the client certificate (services/common/tls/peer_identity.py); the service's access table (default
deny); request bytes that do not parse (corrupt, or nested deeper than the protobuf parser's limit) refused as
INVALID_ARGUMENT after authentication, where grpc would answer UNKNOWN; typed errors mapped to rich statuses;
unexpected errors reported as INTERNAL without internal text; one access log line per call and one measurement of
its duration (`rpc.server.call.duration`, services/common/metrics.py). Health checks and reflection skip all of
this (they stay open for probes and grpcurl, and probes would swamp the RPC metrics).

It wraps each method handler rather than only intercepting, because the wrapper runs inside the call's own task
and with the real servicer context (interceptors see neither). It starts the span itself, rather than stacking
OpenTelemetry's gRPC server interceptor on top, because it already holds everything the span needs (parsed
metadata, final status) and every layer around a call costs latency; the RPC metric is recorded here for the
same reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.common import call_context, status
from services.common.errors import CustodyError, InvalidArgument
from services.common.identity import AccessTable, Authenticator, Principal
from services.common.metrics import RPC_DURATION
from services.common.tls.peer_identity import TransportIdentity

log = logging.getLogger("custody.rpc")

# Turns an exception into the status it deserves, or None (services/common/outage_errors.py).
OutageErrors = Callable[[BaseException], CustodyError | None]

OPEN_SERVICE_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


class CallHandling(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        service: str,
        credentials: Authenticator,
        access: AccessTable,
        tracer_provider: trace.TracerProvider,
        transport: TransportIdentity | None = None,
        outage_errors: OutageErrors | None = None,
    ) -> None:
        self._service = service
        self._credentials = credentials
        self._access = access
        # None: plaintext, no certificates (a service's token alone authenticates it, as on loopback it must).
        self._transport = transport
        self._tracer = tracer_provider.get_tracer("custody.rpc")
        # A database outage or a full disk is a status of its own (UNAVAILABLE, RESOURCE_EXHAUSTED), not INTERNAL.
        self._outage_errors = outage_errors

    async def intercept_service(  # type: ignore[override]  # stubs type it per message type; this wraps every method
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        full_method: str = handler_call_details.method
        if handler is None or full_method.startswith(OPEN_SERVICE_PREFIXES):
            return handler
        return self._wrap(handler, full_method)

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], full_method: str) -> grpc.RpcMethodHandler[Any, Any]:
        method = full_method.rsplit("/", 1)[-1]
        parse = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, full_method), parse, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method, full_method), parse, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method, full_method), parse, handler.response_serializer
            )
        assert handler.stream_stream is not None  # a handler has exactly one of the four behaviours
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method, full_method), parse, handler.response_serializer
        )

    def _unary(self, behavior: Callable[..., Any], method: str, full_method: str) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = self._begin(context, full_method)
            # Unary answers carry the request id as a trailer: it rides on the status, costing no extra write.
            context.set_trailing_metadata(((call_context.REQUEST_ID_HEADER, call.request_id),))
            try:
                await self._admit(call, method, context)
                return await behavior(_checked(request), context)
            except BaseException as exc:
                await self._fail(call, exc, context, full_method)
                raise
            finally:
                self._end(call, full_method)

        return handle

    def _streaming(self, behavior: Callable[..., Any], method: str, full_method: str) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = self._begin(context, full_method)
            try:
                # Streams announce the request id up front, before the first message.
                await context.send_initial_metadata(((call_context.REQUEST_ID_HEADER, call.request_id),))
                await self._admit(call, method, context)
                async for response in behavior(_checked(request), context):
                    yield response
            except BaseException as exc:
                await self._fail(call, exc, context, full_method)
                raise
            finally:
                self._end(call, full_method)

        return handle

    def _begin(self, context: grpc.aio.ServicerContext[Any, Any], full_method: str) -> _Call:
        # Binary (-bin) metadata values arrive as bytes; only text values are ever read.
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        parent = propagate.extract(metadata)
        sent = metadata.get(call_context.REQUEST_ID_HEADER) or baggage.get_baggage(
            call_context.REQUEST_ID_BAGGAGE_KEY, parent
        )
        valid = sent is not None and call_context.is_valid_request_id(str(sent))
        request_id = str(sent) if valid else call_context.new_request_id()
        call_context.bind(request_id=request_id, principal=None, time_remaining=context.time_remaining())
        # Baggage makes outgoing calls carry the request id even through hops that drop x-request-id.
        scope = baggage.set_baggage(call_context.REQUEST_ID_BAGGAGE_KEY, request_id, parent)
        service, _, method = full_method.lstrip("/").partition("/")
        span = self._tracer.start_span(
            full_method,
            scope,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = otel_context.attach(trace.set_span_in_context(span, scope))
        rejected = None if sent is None or valid else str(sent)
        return _Call(request_id, token, span, metadata, rejected_request_id=rejected)

    async def _admit(self, call: _Call, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Checks the request id, then authenticates and authorizes; raises CustodyError to refuse."""
        if call.rejected_request_id is not None:
            raise InvalidArgument(
                "REQUEST_ID_INVALID",
                f"x-request-id must match {call_context.REQUEST_ID_PATTERN.pattern} "
                f"(got {call.rejected_request_id[:64]!r})",
            )
        authorization = call.metadata.get("authorization")
        via: str | None = None
        if self._transport is None:
            caller = self._credentials.authenticate(authorization)
        else:
            via = self._transport.certified_service(context.auth_context())
            if via is not None and not authorization:
                caller = Principal.service(via)  # the verified certificate alone names the service
            else:
                caller = self._credentials.authenticate(authorization)
                self._transport.check(caller, via)
        call.caller, call.via = caller.id, via
        self._access.authorize(method, caller)
        call_context.bind(
            request_id=call.request_id, principal=caller, time_remaining=context.time_remaining(), via_service=via
        )

    async def _fail(
        self, call: _Call, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any], full_method: str
    ) -> None:
        """Aborts with the status `exc` deserves (which raises), or records why the call ended."""
        if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted on purpose; its status stands
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            return
        request_id = ((call_context.REQUEST_ID_HEADER, call.request_id),)
        if isinstance(exc, Exception) and self._outage_errors is not None:
            outage = self._outage_errors(exc)
            if outage is not None:
                log.warning("%s failed: %s", full_method, outage.reason, exc_info=exc)
                exc = outage
        if isinstance(exc, CustodyError):
            code, message, trailers = status.encode(exc, self._service)
            call.code, call.reason = code, exc.reason
            await context.abort(code, message, trailers + request_id)
        if isinstance(exc, Exception):
            call.code = grpc.StatusCode.INTERNAL
            log.error("unhandled error in %s", full_method, exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, status.INTERNAL_MESSAGE, request_id)
        call.code = grpc.StatusCode.CANCELLED

    def _end(self, call: _Call, full_method: str) -> None:
        duration_s = time.perf_counter() - call.started
        service, _, method = full_method.lstrip("/").partition("/")
        RPC_DURATION.record(
            duration_s,
            {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
                "rpc.grpc.status_code": call.code.value[0],
            },
        )
        log.info(
            "rpc %s %s",
            full_method,
            call.code.name,
            extra={
                "rpc": full_method,
                "code": call.code.name,
                "reason": call.reason,
                "duration_ms": round(duration_s * 1000, 3),
                "caller": call.caller,
                "via_service": call.via,
            },
        )
        span = call.span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", call.code.value[0])
            if call.code is not grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, f"{call.code.name} {call.reason}".strip()))
        span.end()
        otel_context.detach(call.otel_token)


@dataclass(frozen=True)
class _Malformed:
    """Stands in for a request message whose bytes did not parse, so the call can refuse it with a status."""

    problem: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    parse = deserializer

    def tolerant(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return tolerant


def _malformed(problem: str) -> InvalidArgument:
    return InvalidArgument(
        "REQUEST_MALFORMED",
        f"the request is not a valid protobuf message of this RPC's request type ({problem}); messages nested "
        "more than 100 levels deep are refused",
    )


def _checked(request: Any) -> Any:
    """The request as the servicer expects it: a malformed unary request raises, a stream raises on its turn."""
    if isinstance(request, _Malformed):
        raise _malformed(request.problem)
    if hasattr(request, "__aiter__"):
        return _checked_stream(request)
    return request


async def _checked_stream(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for message in messages:
        if isinstance(message, _Malformed):
            raise _malformed(message.problem)
        yield message


@dataclass
class _Call:
    """Bookkeeping for one RPC, for its access log line."""

    request_id: str
    otel_token: Token[Context]
    span: trace.Span
    metadata: dict[str, str]
    rejected_request_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""
    caller: str = ""
    via: str | None = None
