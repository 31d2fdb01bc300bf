"""Service processes an outage harness can kill and start again on the same port: `custody serve SERVICE` over one
shared state directory (so the services know each other's tokens), optionally wrapped in another command (runs
inside a private mount namespace for the full-disk scenario)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import free_port
from services.cli.health import check
from services.cli.state import StateLayout, initialize
from services.common.catalog import SERVICES
from services.common.config import env_prefix

READY_TIMEOUT_S = 90.0


class ServiceProcess:
    """One `custody serve` process on a fixed port; `start` waits until its health check says SERVING."""

    def __init__(
        self, service: str, state: Path, settings: dict[str, str] | None = None, wrap: Sequence[str] = ()
    ) -> None:
        self.service = service
        self.layout = StateLayout(state)
        initialize(self.layout)  # once per directory; later calls keep the tokens
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.settings = settings or {}
        self.wrap = tuple(wrap)
        self.log = state / f"{service}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._launched = 0.0

    def command(self) -> list[str]:
        config = str(self.layout.service_config(self.service))
        return [sys.executable, "-m", "services.cli", "serve", self.service, "--config", config]

    def start(self) -> float:
        """Starts the process; returns the seconds until it served."""
        started = time.monotonic()
        self.launch()
        self.wait_ready()
        return time.monotonic() - started

    def launch(self) -> None:
        """Starts the process without waiting for it (several can then start side by side)."""
        prefix = env_prefix(self.service)
        # No provider keys: ai_gateway answers with its offline local provider, as on a machine without any.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTODY_", "OPENAI_"))}
        env.update({prefix + "PORT": str(self.port), prefix + "STATE_DIR": str(self.layout.root)})
        env.update({prefix + "LOG_LEVEL": "WARNING"})
        env.update({prefix + key.upper(): value for key, value in self.settings.items()})
        self._launched = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*self.wrap, *self.command()], env=env, stdout=log, stderr=log)

    def wait_ready(self) -> None:
        """Waits until the launched process's health check says SERVING."""
        assert self.process is not None
        while check(self.address, SERVICES[self.service].full_name, 0.5) != "SERVING":
            if self.process.poll() is not None or time.monotonic() - self._launched > READY_TIMEOUT_S:
                raise RuntimeError(f"{self.service} did not start (exit {self.process.poll()}); see {self.log}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: no drain, no shutdown hooks."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
