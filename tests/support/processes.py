"""Helpers for tests that run the real `custody` command line and real service processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.cli.state import StateLayout
from services.common.catalog import CONSOLE, PROCESS_NAMES, SERVICE_NAMES
from services.common.config import env_prefix

CUSTODY = [sys.executable, "-m", "services.cli"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def custody(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs `custody ARGS` to completion and returns its exit code and output."""
    return subprocess.run(
        [*CUSTODY, *args], env=dict(env or os.environ), capture_output=True, text=True, timeout=timeout, check=False
    )


def clean_environment(**extra: str) -> dict[str, str]:
    """The test's environment without any CUSTODY_* variables a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    env.update(extra)
    return env


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    state_dir: Path
    ports: dict[str, int]
    stderr_path: Path
    stdout_path: Path
    peer_ports: dict[str, int] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def peer_address(self, service: str) -> str:
        return f"127.0.0.1:{self.peer_ports[service]}"

    @property
    def console_url(self) -> str:
        scheme = "https" if self.peer_ports else "http"
        return f"{scheme}://127.0.0.1:{self.ports[CONSOLE]}"

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.stderr_path.read_text().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        return lines

    def service_pids(self) -> dict[str, int]:
        """Process name (the services and the console) -> pid of the processes `custody up` started."""
        pids: dict[str, int] = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                name = argv[argv.index(b"serve") + 1].decode()
                pids[name] = int(pid)
        return pids

    def stop(self, timeout_s: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl-C
        return self.process.wait(timeout=timeout_s)


@contextmanager
def running_stack(tmp_path: Path, *, tls: bool = False, **extra_env: str) -> Iterator[RunningStack]:
    """`custody up` (`--tls`: with TLS, peer ports free too) on free ports, the console's and the services' metrics
    endpoints' too, waited for until it has printed its endpoint table."""
    ports = {process: free_port() for process in PROCESS_NAMES}
    peer_ports = {service: free_port() for service in SERVICE_NAMES} if tls else {}
    metrics_ports = {service: free_port() for service in SERVICE_NAMES}
    env = clean_environment(
        **{env_prefix(s) + "PORT": str(p) for s, p in ports.items()},
        **{env_prefix(s) + "PEER_PORT": str(p) for s, p in peer_ports.items()},
        **{env_prefix(s) + "METRICS_PORT": str(p) for s, p in metrics_ports.items()},
        **extra_env,
    )
    state_dir = tmp_path / "var"
    stdout_path, stderr_path = tmp_path / "up.out", tmp_path / "up.err"
    command = [*CUSTODY, "up", "--state-dir", str(state_dir), *(["--tls"] if tls else [])]
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True, cwd=tmp_path)
    stack = RunningStack(process, state_dir, ports, stderr_path, stdout_path, peer_ports, metrics_ports)
    with _killed_on_exit(process):
        _wait_until(process, lambda: "Ctrl-C stops every service" in stdout_path.read_text(), "custody up", stderr_path)
        yield stack


@dataclass
class ServedProcess:
    """One `custody serve SERVICE` process on free ports (its gRPC port and its metrics endpoint)."""

    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    stderr_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, as an orchestrator stops it: the service drains and commits what it queued, then exits."""
        if self.process.poll() is None:
            self.process.send_signal(15)
        return self.process.wait(timeout=timeout_s)


@contextmanager
def serving(
    service: str,
    state_dir: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    **settings: str,
) -> Iterator[ServedProcess]:
    """`custody serve SERVICE` with the state directory's config file, waited for until it is SERVING; `settings`
    become its CUSTODY_<SERVICE>_* variables. On free ports unless given (its callers may need them before it
    starts). Killed on exit."""
    from services.cli.health import check
    from services.common.catalog import SERVICES

    prefix = env_prefix(service)
    config = StateLayout(state_dir).service_config(service)
    command = [*CUSTODY, "serve", service, *(["--config", str(config)] if config.exists() else [])]
    stderr_path = log_dir / f"{service}.err"
    # A free port is free when picked, not always when the process binds it (tests run in parallel): a port this
    # helper picked is picked again when the process could not bind it.
    for attempt in range(3):
        chosen_port, chosen_metrics = port or free_port(), metrics_port or free_port()
        env = clean_environment(
            **{
                prefix + "STATE_DIR": str(state_dir),
                prefix + "PORT": str(chosen_port),
                prefix + "METRICS_PORT": str(chosen_metrics),
            },
            **{prefix + key.upper(): value for key, value in settings.items()},
        )
        with stderr_path.open("w") as err:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        served = ServedProcess(process, chosen_port, chosen_metrics, stderr_path)
        with _killed_on_exit(process):

            def serving_now(address: str = served.address) -> bool:
                return bool(check(address, SERVICES[service].full_name, 0.5, None) == "SERVING")

            try:
                _wait_until(process, serving_now, f"custody serve {service}", stderr_path)
            except AssertionError:
                clash = "Address already in use" in stderr_path.read_text()
                if clash and (port is None or metrics_port is None) and attempt < 2:
                    continue
                raise
            yield served
            return


def _wait_until(process: subprocess.Popen[str], ready: Callable[[], bool], what: str, stderr_path: Path) -> None:
    """Polls `ready()` for up to a minute; fails with the process's stderr if it exits or never gets ready."""
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}: {stderr_path.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not become ready: {stderr_path.read_text()}")
        time.sleep(0.1)


@contextmanager
def _killed_on_exit(process: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
