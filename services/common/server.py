"""The one server bootstrap every Custody service runs on.

It owns the process: configuration errors (exit 2), logging, tracing, the gRPC server with health and reflection,
explicit message-size and keepalive limits, and graceful shutdown (health NOT_SERVING, then drain within the
grace period) on SIGTERM or SIGINT.
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
from services.common.call_handling import CallHandling
from services.common.config import CONFIG_EXIT_CODE, ConfigError, ServiceSettings, StatefulServiceSettings, env_prefix
from services.common.credentials_watch import CredentialsFile
from services.common.db import check_connection
from services.common.identity import AccessTable, CredentialsError
from services.common.telemetry import configure_logging, configure_tracing
from services.common.version import CUSTODY_VERSION

log = logging.getLogger("custody.server")

STARTUP_EXIT_CODE = 3
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Clients (ours included) may ping every 10 s; anything faster is answered with GOAWAY too_many_pings.
MIN_PING_INTERVAL_MS = 10_000
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


class RunningServer:
    """A started server; `port` is the bound one (useful when settings asked for port 0)."""

    def __init__(self, server: grpc.aio.Server, health: HealthServicer, service: Service, port: int) -> None:
        self.server = server
        self.health = health
        self.service = service
        self.port = port

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        for hook in self.service.on_stop:
            await hook()
        if self.service.engine is not None:
            self.service.engine.dispose()


async def start(settings: ServiceSettings, factory: ServiceFactory, tracer_provider: TracerProvider) -> RunningServer:
    """Builds and starts the server; raises PortInUse, ConfigError or CredentialsError before serving anything."""
    credentials = CredentialsFile(settings.resolved_credentials_file)  # re-read when it changes
    # Servicers run database and file work in threads; asyncio's default pool (cores + 4 = 6 here) would make
    # concurrent calls queue for a thread instead of for the database, and cap group-commit batches at its size.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.blocking_threads, thread_name_prefix=f"{settings.service}-io")
    )
    service = factory(settings, tracer_provider)
    server = grpc.aio.server(
        interceptors=[CallHandling(settings.service, credentials, service.access, tracer_provider)],
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
    try:
        port = server.add_insecure_port(settings.address)
    except RuntimeError:
        port = 0
    if (port == 0 and settings.port != 0) or port < 0:
        raise PortInUse(
            f"cannot listen on {settings.address} ({env_prefix(settings.service)}PORT): "
            "the address is already in use or not available on this host"
        )
    if service.engine is not None:
        try:
            await asyncio.to_thread(check_connection, service.engine)
            if isinstance(settings, StatefulServiceSettings) and settings.auto_migrate:
                await asyncio.to_thread(migrations.upgrade, service.engine, settings.service)
        except SQLAlchemyError as exc:
            where = service.engine.url.render_as_string(hide_password=True)
            raise StartupError(f"cannot open database {where}: {type(exc).__name__}: {exc}") from None
    for hook in service.on_start:
        await hook()
    await server.start()
    for name in ("", service.full_name):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving %s on %s:%d",
        service.full_name,
        settings.host,
        port,
        extra={"version": CUSTODY_VERSION, "port": port},
    )
    return RunningServer(server, health, service, port)


async def _serve_until_signalled(settings: ServiceSettings, factory: ServiceFactory) -> None:
    tracer_provider = configure_tracing(settings)
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
