"""Runs one Custody service in-process on a free port, served from a background event loop, so tests can call it
with plain synchronous gRPC stubs exactly as any client would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType

import grpc
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.cli.registry import factory as service_factory
from services.cli.registry import settings_class
from services.cli.state import StateLayout, initialize
from services.common.config import ServiceSettings, env_prefix
from services.common.identity import (
    REVIEWER_ROLE,
    CredentialEntry,
    Credentials,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
)
from services.common.server import RunningServer, ServiceFactory, start


def state_layout(root: Path) -> StateLayout:
    """A state directory initialized as `custody init` would (credentials, service configs, operator token)."""
    layout = StateLayout(root)
    initialize(layout)
    return layout


def service_token(layout: StateLayout, service: str) -> str:
    return str(yaml.safe_load(layout.service_config(service).read_text())["token"])


def operator_token(layout: StateLayout) -> str:
    return layout.operator_token.read_text().strip()


def add_principal(layout: StateLayout, principal: Principal) -> str:
    """Adds a principal to the credentials file (before the services start) and returns its token; a principal
    already there gets the new token instead (the file lists each principal once)."""
    token = new_token()
    credentials = Credentials.load(layout.credentials)
    entries = [e for e in credentials.entries if e.principal.id != principal.id]
    entries.append(CredentialEntry(principal, token_digest(token)))
    Credentials(entries).save(layout.credentials)
    return token


SECOND_REVIEWER = Principal("human:rita", PrincipalKind.HUMAN, frozenset({REVIEWER_ROLE}))


def second_reviewer_token(layout: StateLayout) -> str:
    """A second person, a reviewer only (human:rita): four eyes needs someone other than the operator, who
    creates and requests, to approve. Add it before the services start."""
    return add_principal(layout, SECOND_REVIEWER)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def tls_settings(layout: StateLayout, service: str, **more: str) -> dict[str, str]:
    """Harness settings serving `service` with TLS from the certificates `custody init` wrote, on free ports."""
    return {"tls_dir": str(layout.tls.service(service).root), "peer_port": "0", **more}


def tls_channel(address: str, ca: bytes, key: bytes | None = None, certificate: bytes | None = None) -> grpc.Channel:
    """A TLS channel (mutual with key and certificate) on a connection of its own: channels in one process
    otherwise share connections, and a test of handshakes needs each channel to make its own."""
    credentials = grpc.ssl_channel_credentials(ca, key, certificate)
    return grpc.secure_channel(address, credentials, options=[("grpc.use_local_subchannel_pool", 1)])


class ServiceHarness:
    def __init__(
        self,
        service: str,
        layout: StateLayout,
        *,
        factory: ServiceFactory | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.service = service
        self.layout = layout
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        environ = {env_prefix(service) + "PORT": "0", env_prefix(service) + "STATE_DIR": str(layout.root)}
        environ.update({env_prefix(service) + k.upper(): v for k, v in (settings or {}).items()})
        self.settings: ServiceSettings = settings_class(service).load(layout.service_config(service), environ)
        self._factory = factory or service_factory(service)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"harness-{service}", daemon=True)
        self.running: RunningServer | None = None
        self._channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        assert self.running is not None
        return f"127.0.0.1:{self.running.port}"

    @property
    def peer_address(self) -> str:
        """The mutual-TLS listener for services (TLS only)."""
        assert self.running is not None and self.running.peer_port is not None
        return f"127.0.0.1:{self.running.peer_port}"

    @property
    def health_address(self) -> str:
        """The plaintext health-only listener (health_port set only)."""
        assert self.running is not None and self.running.health_port is not None
        return f"127.0.0.1:{self.running.health_port}"

    def run(self, coroutine_factory: Callable[[], object], timeout_s: float = 30) -> object:
        """Runs a coroutine on the server's loop (e.g. to stop it) and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine_factory(), self._loop).result(timeout_s)  # type: ignore[arg-type]

    def __enter__(self) -> ServiceHarness:
        self._thread.start()
        self.running = self.run(lambda: start(self.settings, self._factory, self.tracer_provider))  # type: ignore[assignment]
        return self

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def stop(self, grace_s: float = 0) -> None:
        if self.running is not None:
            running, self.running = self.running, None
            self.run(lambda: running.stop(grace_s))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._channel is not None:
            self._channel.close()
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def all_services(
    layout: StateLayout,
    *,
    common: Mapping[str, str] | None = None,
    settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[dict[str, ServiceHarness]]:
    """The four services in process on free ports, sharing one state directory and wired to one another as
    `custody up` wires them: ai_gateway and lineage first, then runs, then art_studio. `common` settings go to every
    service, `settings[service]` to one (e.g. {"ai_gateway": {"audit_verbose": "true"}}). Yields service -> harness.
    """
    settings = settings or {}

    def options(service: str, **peers: str) -> dict[str, str]:
        return {**(common or {}), **peers, **settings.get(service, {})}

    with ExitStack() as stack:
        gateway = stack.enter_context(ServiceHarness("ai_gateway", layout, settings=options("ai_gateway")))
        lineage = stack.enter_context(ServiceHarness("lineage", layout, settings=options("lineage")))
        peers = {"ai_gateway_address": gateway.address, "lineage_address": lineage.address}
        runs = stack.enter_context(ServiceHarness("runs", layout, settings=options("runs", **peers)))
        studio = stack.enter_context(
            ServiceHarness("art_studio", layout, settings=options("art_studio", runs_address=runs.address, **peers))
        )
        yield {h.service: h for h in (gateway, lineage, runs, studio)}
