"""`custody up`: the four services and the review console as separate processes on one machine, each with only its
own configuration.

Only ai_gateway sees the caller's full environment (provider keys live there); the others get a minimal one plus
their own CUSTODY_<SERVICE>_* variables. If any process dies the rest are stopped and the exit is non-zero.
With TLS (`custody up --tls`) each service gets its certificate directory (var/tls/<service>/) and its peers'
mutual-TLS addresses; TLS is on for every service or for none. The console gets the services' public addresses
(it calls them as the signed-in person, like the CLI) and, with TLS, its own certificate and the CA. Each service
serves Prometheus metrics on its port + 1000 (51051-51054 by default) unless its METRICS_PORT says otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from services.cli.health import check
from services.cli.registry import settings_class
from services.cli.state import CACERT_ENV, TOKEN_ENV, StateLayout
from services.common.catalog import CONSOLE, PROCESS_NAMES, SERVICE_NAMES, SERVICES
from services.common.config import ConfigError, ProcessSettings, ServiceSettings, env_prefix
from services.common.tls.credentials import ChannelSecurity
from services.console.config import ConsoleSettings

# What a service without provider access inherits from the caller's environment.
BASE_ENV_NAMES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
PASSTHROUGH_PREFIXES = ("OTEL_",)
FULL_ENV_SERVICES = frozenset({"ai_gateway"})
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 8.0
PR_SET_PDEATHSIG = 1
# A service's metrics endpoint under `custody up`: its gRPC port + this (README "Metrics").
METRICS_PORT_OFFSET = 1000


def child_environment(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment `service` is started with: its own settings only, provider keys only for ai_gateway."""
    others = tuple(env_prefix(s) for s in PROCESS_NAMES if s != service)
    if service in FULL_ENV_SERVICES:
        env = {k: v for k, v in environ.items() if not k.upper().startswith(others)}
    else:
        env = {
            k: v
            for k, v in environ.items()
            if k in BASE_ENV_NAMES or k.startswith(PASSTHROUGH_PREFIXES) or k.upper().startswith(env_prefix(service))
        }
    env.pop(TOKEN_ENV, None)  # the operator's token is for the CLI, never for a service
    env.pop(CACERT_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Planned:
    service: str  # a process name: one of the services, or the console
    settings: ProcessSettings
    config_file: Path | None
    env: dict[str, str]
    # How clients reach the public port: None (plaintext), or TLS trusting the local CA.
    security: ChannelSecurity | None = None

    @property
    def is_service(self) -> bool:
        return isinstance(self.settings, ServiceSettings)

    @property
    def peer_address(self) -> str:
        """Where this service's peers call it: its mutual-TLS port with TLS, else its only port."""
        assert isinstance(self.settings, ServiceSettings)
        return self.settings.peer_listen_address or self.settings.address

    @property
    def console_url(self) -> str:
        scheme = "https" if self.settings.tls_dir is not None else "http"
        return f"{scheme}://{self.settings.address}"

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes this service (plaintext); None when its metrics are off."""
        if not isinstance(self.settings, ServiceSettings) or not self.settings.metrics_port:
            return None
        return f"http://{self.settings.host}:{self.settings.metrics_port}/metrics"

    def ready(self) -> bool:
        """SERVING on grpc.health.v1 for a service; /healthz answering for the console."""
        if self.is_service:
            return check(self.settings.address, SERVICES[self.service].full_name, 0.5, self.security) == "SERVING"
        context = None
        if isinstance(self.settings, ConsoleSettings) and self.settings.resolved_ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.settings.resolved_ca_file))
        try:
            with urlopen(f"{self.console_url}/healthz", timeout=0.5, context=context) as response:
                return bool(response.status == 200)
        except (URLError, OSError):
            return False


def plan(layout: StateLayout, environ: Mapping[str, str], *, tls: bool = False) -> list[Planned]:
    """Validates every service's configuration before anything starts (raises ConfigError), and points callers
    at the addresses their peers will really listen on."""
    planned: list[Planned] = []
    for service in SERVICE_NAMES:
        env = child_environment(service, environ)
        env.setdefault(env_prefix(service) + "STATE_DIR", str(layout.root))
        if tls:
            env.setdefault(env_prefix(service) + "TLS_DIR", str(layout.tls.service(service).root))
        config_file = layout.service_config(service)
        settings = settings_class(service).load(config_file, env)
        if settings.metrics_port is None and settings.port:
            env[env_prefix(service) + "METRICS_PORT"] = str(settings.port + METRICS_PORT_OFFSET)
            settings = settings_class(service).load(config_file, env)
        security = None if settings.tls_dir is None else ChannelSecurity.for_operator(layout.tls.client_ca)
        planned.append(Planned(service, settings, config_file, env, security))
    planned.append(_plan_console(layout, environ, planned, tls=tls))
    with_tls = sorted(p.service for p in planned if p.settings.tls_dir is not None)
    if with_tls and len(with_tls) != len(planned):
        raise ConfigError(
            f"TLS is configured for {', '.join(with_tls)} only: services call each other over mutual TLS, so set "
            "<SERVICE>_TLS_DIR for every service or none (`custody up --tls` sets all four)"
        )
    for p in planned:
        if not p.is_service:
            continue
        for peer in SERVICES[p.service].calls:
            callee = next(q for q in planned if q.service == peer)
            p.env.setdefault(env_prefix(p.service) + f"{peer.upper()}_ADDRESS", callee.peer_address)
    return planned


def _plan_console(layout: StateLayout, environ: Mapping[str, str], services: list[Planned], *, tls: bool) -> Planned:
    prefix = env_prefix(CONSOLE)
    env = child_environment(CONSOLE, environ)
    env.setdefault(prefix + "STATE_DIR", str(layout.root))
    for p in services:
        env.setdefault(prefix + f"{p.service.upper()}_ADDRESS", p.settings.address)
    if tls:
        env.setdefault(prefix + "TLS_DIR", str(layout.tls.service(CONSOLE).root))
    config_file = layout.service_config(CONSOLE)
    config = config_file if config_file.exists() else None
    return Planned(CONSOLE, ConsoleSettings.load(config, env), config, env)


class Stack:
    def __init__(self, planned: list[Planned], log: Callable[[str], None]) -> None:
        self._planned = planned
        self._log = log
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for p in self._planned:
            command = [sys.executable, "-m", "services.cli", "serve", p.service]
            if p.config_file is not None:
                command += ["--config", str(p.config_file)]
            self.processes[p.service] = subprocess.Popen(command, env=p.env, preexec_fn=_die_with_parent)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str | None:
        """Waits until every service reports SERVING; returns a problem description, or None when all are up."""
        deadline = time.monotonic() + timeout_s
        pending = {p.service: p for p in self._planned}
        while pending and time.monotonic() < deadline:
            dead = self.dead()
            if dead:
                return dead
            for service, p in list(pending.items()):
                if p.ready():
                    del pending[service]
            if pending:
                time.sleep(0.1)
        if pending:
            return f"not SERVING after {timeout_s:.0f} s: {', '.join(sorted(pending))}"
        return None

    def dead(self) -> str | None:
        for service, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return f"{service} exited with code {code}"
        return None

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"{service} did not stop within {STOP_TIMEOUT_S:.0f} s; killing it")
                process.kill()
                process.wait()

    def addresses(self) -> dict[str, str]:
        """The services' public gRPC addresses."""
        return {p.service: p.settings.address for p in self._planned if p.is_service}

    def metrics_urls(self) -> dict[str, str]:
        """The services' Prometheus endpoints (those with metrics on)."""
        return {p.service: url for p in self._planned if (url := p.metrics_url) is not None}

    def peer_addresses(self) -> dict[str, str]:
        return {p.service: p.peer_address for p in self._planned if p.is_service}

    @property
    def console_url(self) -> str:
        return next(p.console_url for p in self._planned if p.service == CONSOLE)

    @property
    def tls(self) -> bool:
        return any(p.security is not None for p in self._planned)


def _die_with_parent() -> None:
    """Runs in the child before exec: if `custody up` itself dies, the kernel sends the service SIGTERM."""
    with contextlib.suppress(OSError):  # not Linux: the supervisor's own cleanup still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(stack: Stack, log: Callable[[str], None]) -> int:
    """Blocks until a signal (exit 0) or until a service dies (exit 1); stops everything either way."""
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            dead = stack.dead()
            if dead:
                log(f"{dead}; stopping the other services")
                stack.stop()
                return 1
            time.sleep(0.2)
        log("stopping all services")
        stack.stop()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
