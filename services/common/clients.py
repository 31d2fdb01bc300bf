"""The one gRPC client factory, used by services calling each other and by the operator CLI.

Every outgoing call carries the caller's bearer token, the current request id (x-request-id and baggage) and
W3C trace context, and a deadline: the remaining time of the incoming call, or a default when there is none.
Only methods whose .proto declares them idempotent are retried (by gRPC's own retry policy, with backoff).
Channels are plaintext, or TLS (services/common/tls/credentials.py): mutual TLS with the service's own certificate
for a service calling its peers, server-authenticated TLS for operators. When a service's certificate files change
(cert-manager renewed them), the next call opens new channels with the new certificate and the old channels close
once their calls are done.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.trace import TracerProvider

from custody.ai_gateway.v1 import gateway_pb2
from services.common import call_context
from services.common.config import ServiceSettings, address_list
from services.common.contracts import is_retry_safe, service_descriptor, stub_class
from services.common.gateway_images import ReceivedImages, collect_images
from services.common.keepalive import KEEPALIVE_TIMEOUT_MS, MIN_PING_INTERVAL_MS
from services.common.tls.credentials import ChannelSecurity, FilesSignature, TlsDirectory, TlsFilesError

log = logging.getLogger("custody.clients")

# Our clients ping no more often than servers allow (keepalive.MIN_PING_INTERVAL_MS).
CLIENT_KEEPALIVE_TIME_MS = 3 * MIN_PING_INTERVAL_MS


def retry_service_config(service: str) -> str:
    descriptor = service_descriptor(service)
    retryable = [{"service": descriptor.full_name, "method": m.name} for m in descriptor.methods if is_retry_safe(m)]
    # round_robin spreads calls over every address a name resolves to (e.g. a headless Service's pods).
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": []}
    if retryable:
        config["methodConfig"].append(
            {
                "name": retryable,
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps(config)


class _OutgoingCall:
    """Adds token, request id and deadline to a call's details (shared by the four interceptor shapes)."""

    def __init__(self, token: str | None, default_timeout_s: float) -> None:
        self._token = token
        self._default_timeout_s = default_timeout_s

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._token and not metadata.get_all("authorization"):
            metadata["authorization"] = f"Bearer {self._token}"
        request_id = call_context.request_id()
        if request_id and not metadata.get_all(call_context.REQUEST_ID_HEADER):
            metadata[call_context.REQUEST_ID_HEADER] = request_id
        timeout = details.timeout
        remaining = call_context.time_remaining()
        if remaining is not None:
            timeout = max(0.0, remaining) if timeout is None else min(timeout, max(0.0, remaining))
        elif timeout is None:
            timeout = self._default_timeout_s
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_OutgoingCall, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details), request)


class _UnaryStream(_OutgoingCall, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details), request)


class _StreamUnary(_OutgoingCall, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self.details(details), request_iterator)


class _StreamStream(_OutgoingCall, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self.details(details), request_iterator)


def grpc_target(address: str) -> str:
    """The gRPC target of a configured service address (config.address_list): a single address as it is, a list of
    replicas' IP host:port as gRPC's static `ipv4:`/`ipv6:` target, over which round_robin spreads calls (and from
    which it drops a replica that stops answering until it is back)."""
    entries = address_list(address)
    if len(entries) == 1:
        return entries[0]
    scheme = "ipv6" if entries[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(entries)}"


def channel_options(service: str, max_message_bytes: int, address: str | None = None) -> list[tuple[str, Any]]:
    """`address` is the configured one. For a list of replicas the channel's authority, the name TLS checks each
    replica's certificate against, is the list's first entry (gRPC would take the whole list for a name), so with
    TLS every replica's certificate must name that address (`custody init`'s certificates name 127.0.0.1 and ::1)."""
    entries = address_list(address) if address else []
    authority = [("grpc.default_authority", entries[0])] if len(entries) > 1 else []
    return [
        *authority,
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(service)),
    ]


class ServiceClients:
    """Channels and stubs to Custody services, one channel per service, created lazily (after any fork)."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        token: str | None,
        *,
        default_timeout_s: float = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        tracer_provider: TracerProvider | None = None,
        security: ChannelSecurity | None = None,
    ) -> None:
        self._addresses = dict(addresses)
        self._token = token
        self._default_timeout_s = default_timeout_s
        self._max_message_bytes = max_message_bytes
        self._tracer_provider = tracer_provider
        self._security = security
        self._credentials: grpc.ChannelCredentials | None = None
        self._signature: FilesSignature | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        # Channels of replaced credentials, closing once their calls end (close() ends them at once).
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    @classmethod
    def for_service(cls, settings: ServiceSettings, tracer_provider: TracerProvider | None) -> ServiceClients:
        """Clients a service uses to call the services in its call graph, as itself."""
        return cls(
            {peer: settings.peer_address(peer) for peer in settings.spec().calls},
            settings.token.get_secret_value() if settings.token else None,
            default_timeout_s=settings.default_deadline_s,
            max_message_bytes=settings.max_message_bytes,
            tracer_provider=tracer_provider,
            security=ChannelSecurity.for_service(TlsDirectory(settings.tls_dir)) if settings.tls_dir else None,
        )

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._addresses:
            raise ValueError(f"no address configured for {service}")
        if self._security is not None:
            signature = self._security.signature()
            if signature != self._signature:
                self._renew_credentials(signature)
        if service not in self._channels:
            interceptors: list[Any] = [
                cls(self._token, self._default_timeout_s)
                for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
            ]
            interceptors.extend(aio_client_interceptors(tracer_provider=self._tracer_provider))  # type: ignore[no-untyped-call]
            address = self._addresses[service]
            target, options = grpc_target(address), channel_options(service, self._max_message_bytes, address)
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
            else:
                channel = grpc.aio.secure_channel(target, self._credentials, options=options, interceptors=interceptors)
            self._channels[service] = channel
        return self._channels[service]

    def _renew_credentials(self, signature: FilesSignature) -> None:
        """Reads the certificate files (again; `signature` is theirs, taken before reading); channels opened with
        the old ones close after their calls. Files caught mid-rotation (a key that is not the certificate's) keep
        the current credentials until complete."""
        assert self._security is not None
        try:
            credentials = self._security.credentials()
        except TlsFilesError as exc:
            if self._credentials is None:
                raise
            log.warning("keeping the current client certificate: %s", exc)
            return
        self._credentials, self._signature = credentials, signature
        old, self._channels = self._channels, {}
        for channel in old.values():
            task = asyncio.get_running_loop().create_task(channel.close(grace=self._default_timeout_s))
            self._retiring[task] = channel
            task.add_done_callback(lambda done: self._retiring.pop(done, None))

    def stub(self, service: str) -> Any:
        return stub_class(service)(self.channel(service))

    async def generate_image(self, request: gateway_pb2.GenerateImageRequest) -> ReceivedImages:
        """ai_gateway's GenerateImage, its stream consumed and every image verified against its descriptor
        (ImageStreamError when one is not what the first message said)."""
        return await collect_images(self.stub("ai_gateway").GenerateImage(request))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        for task, channel in list(self._retiring.items()):
            task.cancel()
            await channel.close()
        self._retiring.clear()
