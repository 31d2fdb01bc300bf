"""The four services, called as the signed-in person.

The console has one channel per service and no token of its own: each call carries the person's token as its
authorization metadata, so what the services decide and record is the person's. A call that fails is raised as
`Refused` with the server's code, reason, message and field violations, for a page to show as they are.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.trace import TracerProvider

from services.common import status
from services.common.clients import ServiceClients
from services.common.status import DecodedError
from services.common.tls.credentials import ChannelSecurity
from services.console.config import ConsoleSettings


class Refused(Exception):
    """A service refused a call (or could not be reached); `error` is what it said."""

    def __init__(self, service: str, method: str, error: DecodedError) -> None:
        super().__init__(f"{service}.{method}: {error.code.name} {error.reason} {error.message}")
        self.service = service
        self.method = method
        self.error = error


class Upstream:
    """Channels to the services, shared by every person's calls."""

    def __init__(self, settings: ConsoleSettings, tracer_provider: TracerProvider | None = None) -> None:
        ca_file = settings.resolved_ca_file
        self._clients = ServiceClients(
            settings.service_addresses(),
            None,  # never a token of the console's: PersonCalls adds the person's to each call
            default_timeout_s=settings.call_timeout_s,
            tracer_provider=tracer_provider,
            security=None if ca_file is None else ChannelSecurity.for_operator(ca_file),
        )

    def as_person(self, token: str) -> PersonCalls:
        return PersonCalls(self._clients, token)

    async def close(self) -> None:
        await self._clients.close()


class PersonCalls:
    """Calls made with one person's token."""

    def __init__(self, clients: ServiceClients, token: str) -> None:
        self._clients = clients
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def call(self, service: str, method: str, request: Any) -> Any:
        """A unary call; raises Refused with the server's rich status on failure."""
        try:
            return await getattr(self._clients.stub(service), method)(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise Refused(service, method, status.decode(exc)) from None

    async def stream(self, service: str, method: str, request: Any) -> list[Any]:
        """A server-streaming call's messages, all of them; raises Refused on failure."""
        try:
            return [
                message
                async for message in getattr(self._clients.stub(service), method)(request, metadata=self._metadata)
            ]
        except grpc.RpcError as exc:
            raise Refused(service, method, status.decode(exc)) from None
