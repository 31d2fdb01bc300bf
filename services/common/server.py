"""The one server bootstrap every Custody service runs on.

It owns the process: configuration errors (exit 2), logging, tracing, metrics (the Prometheus endpoint on
`metrics_port`, services/common/metrics.py), the gRPC server with health and reflection,
explicit message-size and keepalive limits, and graceful shutdown (health NOT_SERVING, then drain within the
grace period) on SIGTERM or SIGINT.

Listeners: plaintext on `port` without TLS. With TLS (settings.tls_dir), two listeners of the same server, because
gRPC's server credentials either require and verify client certificates or never ask for one: `port` is
server-authenticated TLS for people (bearer token), `peer_port` mutual TLS for services (their certificate); both
reload the certificate when its files change. Optionally a third, plaintext listener on its own small server
answers grpc.health.v1 only (`health_port`, for Kubernetes probes, which cannot speak TLS), from the same health
state, so a draining server reads NOT_SERVING there too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.common import migrations, tuning
from services.common.call_handling import CallHandling, OutageErrors
from services.common.config import (
    CONFIG_EXIT_CODE,
    ConfigError,
    ServiceSettings,
    StatefulServiceSettings,
    env_prefix,
    is_loopback,
)
from services.common.credentials_watch import CredentialsFile
from services.common.db import check_connection
from services.common.identity import AccessTable, CredentialsError
from services.common.keepalive import KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS, MIN_PING_INTERVAL_MS
from services.common.metrics import MetricsExport, configure_metrics
from services.common.telemetry import configure_logging, configure_tracing
from services.common.tls.credentials import TlsDirectory, TlsFilesError, TlsMaterial, server_credentials
from services.common.tls.peer_identity import TransportIdentity
from services.common.version import CUSTODY_VERSION

log = logging.getLogger("custody.server")

STARTUP_EXIT_CODE = 3
MAX_CONNECTION_AGE_MS = 5 * 60_000
MAX_CONNECTION_AGE_GRACE_MS = 30_000


@dataclass
class Service:
    """What a service package hands the bootstrap: its servicer registration, access table and lifecycle hooks."""

    full_name: str
    register: Callable[[grpc.aio.Server], None]
    access: AccessTable
    # The service's own database, checked at start-up and disposed at shutdown.
    engine: Engine | None = None
    on_start: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    # Stateful services: translates a database outage or a full disk into its status (outage_errors.py).
    outage_errors: OutageErrors | None = None


# A service package exposes `build(settings, tracer_provider) -> Service`.
ServiceFactory = Callable[[ServiceSettings, TracerProvider], Service]


class StartupError(Exception):
    """The process cannot serve (port taken, database unreachable); the message says which and why."""


class PortInUse(StartupError):
    pass


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_pings_without_data", 0),
        # Never share a port with another process: a second replica on the same port must fail, not split traffic.
        ("grpc.so_reuseport", 0),
        # Clients reconnect every few minutes, so load spreads onto replicas that started after them.
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
    ]


@dataclass
class RunningServer:
    """A started server; the ports are the bound ones (useful when settings asked for port 0)."""

    server: grpc.aio.Server
    health: HealthServicer
    service: Service
    port: int
    # The mutual-TLS listener for services (TLS only).
    peer_port: int | None = None
    # The plaintext health-only listener and its own server (health_port set only).
    health_port: int | None = None
    health_server: grpc.aio.Server | None = None

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        for hook in self.service.on_stop:
            await hook()
        if self.service.engine is not None:
            self.service.engine.dispose()
        if self.health_server is not None:
            await self.health_server.stop(0)


def _tls(settings: ServiceSettings) -> tuple[TlsDirectory, TlsMaterial] | None:
    """The certificate directory and what it holds now; None without TLS. Unusable files are a ConfigError."""
    if settings.tls_dir is None:
        return None
    directory = TlsDirectory(settings.tls_dir)
    try:
        return directory, directory.read()
    except TlsFilesError as exc:
        raise ConfigError(f"{env_prefix(settings.service)}TLS_DIR: {exc}") from None


def _listen(server: grpc.aio.Server, address: str, setting: str, credentials: grpc.ServerCredentials | None) -> int:
    """Binds one listener; raises PortInUse naming the setting when the address is taken or unavailable."""
    try:
        port = (
            server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        )
    except RuntimeError:
        port = 0
    if (port == 0 and not address.endswith(":0")) or port < 0:
        raise PortInUse(
            f"cannot listen on {address} ({setting}): the address is already in use or not available on this host"
        )
    return port


def _health_server(settings: ServiceSettings, health: HealthServicer) -> tuple[grpc.aio.Server, int]:
    """grpc.health.v1 and nothing else (no reflection, no service), plaintext, for probes that cannot speak TLS."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], maximum_concurrent_rpcs=64)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"{settings.host}:{settings.health_port}"
    return server, _listen(server, address, f"{env_prefix(settings.service)}HEALTH_PORT", None)


async def start(settings: ServiceSettings, factory: ServiceFactory, tracer_provider: TracerProvider) -> RunningServer:
    """Builds and starts the server; raises PortInUse, ConfigError or CredentialsError before serving anything."""
    credentials = CredentialsFile(settings.resolved_credentials_file)  # re-read when it changes
    tls = _tls(settings)
    # Servicers run database and file work in threads; asyncio's default pool (cores + 4 = 6 here) would make
    # concurrent calls queue for a thread instead of for the database, and cap group-commit batches at its size.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.blocking_threads, thread_name_prefix=f"{settings.service}-io")
    )
    service = factory(settings, tracer_provider)
    server = grpc.aio.server(
        interceptors=[
            CallHandling(
                settings.service,
                credentials,
                service.access,
                tracer_provider,
                None if tls is None else TransportIdentity(settings.trust_domain),
                service.outage_errors,
            )
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    service.register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (service.full_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    prefix = env_prefix(settings.service)
    peer_port = None
    if tls is None:
        port = _listen(server, settings.address, f"{prefix}PORT", None)
    else:
        directory, material = tls
        public = server_credentials(directory, material, require_client_certificate=False, listener="public port")
        port = _listen(server, settings.address, f"{prefix}PORT", public)
        peer = server_credentials(directory, material, require_client_certificate=True, listener="peer port")
        peer_address = settings.peer_listen_address
        assert peer_address is not None
        peer_port = _listen(server, peer_address, f"{prefix}PEER_PORT", peer)
    health_server, health_port = _health_server(settings, health) if settings.health_port is not None else (None, None)
    if service.engine is not None:
        try:
            await asyncio.to_thread(check_connection, service.engine)
            if isinstance(settings, StatefulServiceSettings) and settings.auto_migrate:
                await asyncio.to_thread(migrations.migrate, settings, service.engine)
        except migrations.MigrationError as exc:
            raise StartupError(f"cannot migrate the database at start-up: {exc}") from None
        except SQLAlchemyError as exc:
            where = service.engine.url.render_as_string(hide_password=True)
            raise StartupError(f"cannot open database {where}: {type(exc).__name__}: {exc}") from None
    for hook in service.on_start:
        await hook()
    await server.start()
    if health_server is not None:
        await health_server.start()
    for name in ("", service.full_name):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving %s on %s:%d (%s)%s%s",
        service.full_name,
        settings.host,
        port,
        "plaintext" if tls is None else "TLS",
        "" if peer_port is None else f", to services on port {peer_port} (mutual TLS)",
        "" if health_port is None else f", health only on port {health_port} (plaintext)",
        extra={
            "version": CUSTODY_VERSION,
            "port": port,
            "peer_port": peer_port,
            "health_port": health_port,
            "tls": tls is not None,
        },
    )
    if tls is None and not is_loopback(settings.host):
        log.warning(
            "serving plaintext on %s (%sALLOW_PLAINTEXT): tokens cross the network readable", settings.host, prefix
        )
    return RunningServer(server, health, service, port, peer_port, health_port, health_server)


def _start_metrics(settings: ServiceSettings) -> MetricsExport:
    """The process's metrics exporters; PortInUse naming the setting when the scrape port is taken."""
    try:
        export = configure_metrics(settings)
    except OSError as exc:
        raise PortInUse(
            f"cannot serve metrics on {settings.host}:{settings.metrics_port} ({env_prefix(settings.service)}"
            f"METRICS_PORT): {exc.strerror or exc}"
        ) from None
    if export.port is not None:
        log.info(
            "metrics on http://%s:%d/metrics (Prometheus text, plaintext)",
            settings.host,
            export.port,
            extra={"metrics_port": export.port},
        )
    return export


async def _serve_until_signalled(settings: ServiceSettings, factory: ServiceFactory) -> None:
    tracer_provider = configure_tracing(settings)
    metrics_export = _start_metrics(settings)
    running = await start(settings, factory, tracer_provider)
    if settings.freeze_startup_objects:
        tuning.freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: NOT_SERVING, draining for up to %.1f s", settings.grace_period_s)
    await running.stop(settings.grace_period_s)
    tracer_provider.shutdown()
    metrics_export.shutdown()
    log.info("stopped")


def run(settings_cls: type[ServiceSettings], factory: ServiceFactory, config_file: object = None) -> int:
    """Process entry point for `custody serve <service>`; returns the exit code."""
    try:
        settings = settings_cls.load(config_file)  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"custody {settings_cls.service}: configuration error: {exc}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    tuning.apply_process_knobs(settings)
    configure_logging(settings.service, settings.log_level)
    try:
        # uvloop: the same asyncio, with its per-callback and per-I/O costs in C, where a lightly loaded service
        # spends a good part of each call.
        uvloop.run(_serve_until_signalled(settings, factory))
    except StartupError as exc:
        print(f"custody {settings.service}: {exc}", file=sys.stderr)
        return STARTUP_EXIT_CODE
    except (CredentialsError, ConfigError) as exc:
        print(f"custody {settings.service}: configuration error: {exc}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    return 0
