"""The services a crash harness kills: real `custody serve` processes configured as `custody up` configures them
(its plan), on a fresh state directory and fresh databases, each one killable with SIGKILL and restartable on
the same port and the same data.

On PostgreSQL every service gets a schema of its own in the given database (each service owns its database; a schema
is the cheapest fresh one), dropped when the harness ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.harness import free_port
from services.cli.people import add_user
from services.cli.stack import READY_TIMEOUT_S, STOP_TIMEOUT_S, Planned, plan
from services.cli.state import StateLayout, initialize, save_endpoints
from services.common.catalog import SERVICE_NAMES
from services.common.config import StatefulServiceSettings, env_prefix
from services.common.db import normalize_url
from services.common.identity import REVIEWER_ROLE
from services.runs.config import RunsSettings

KILLABLE = ("runs", "lineage")
REVIEWER = "crash-reviewer"
# Checkpoints signed every second, so kills land while checkpoint files are being written too.
SETTINGS = {"LOG_LEVEL": "ERROR", "LEDGER_CHECKPOINT_INTERVAL_S": "1"}


@dataclass
class CrashStack:
    layout: StateLayout
    database_urls: dict[str, str]
    reviewer_token: str
    planned: dict[str, Planned]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KILLABLE, 0))

    @property
    def operator_token(self) -> str:
        return self.layout.operator_token.read_text(encoding="utf-8").strip()

    @property
    def addresses(self) -> dict[str, str]:
        return {service: self.address(service) for service in KILLABLE}

    def address(self, service: str) -> str:
        return self.settings(service).address

    def settings(self, service: str) -> StatefulServiceSettings:
        settings = self.planned[service].settings
        assert isinstance(settings, StatefulServiceSettings)
        return settings

    @property
    def runs_settings(self) -> RunsSettings:
        settings = self.planned["runs"].settings
        assert isinstance(settings, RunsSettings)
        return settings

    def start(self, *services: str) -> None:
        """Starts the services side by side (`custody serve`, as `custody up` runs each) and waits until each is
        SERVING. Not through `custody up`'s own Stack: it forks with a pre-exec hook, and a fork while this
        process's client threads are inside gRPC can abort the child before it execs (gRPC skips its fork
        handlers then), which would count as a crash of the service."""
        for service in services:
            planned = self.planned[service]
            command = [sys.executable, "-m", "services.cli", "serve", service, "--config", str(planned.config_file)]
            with self.log(service).open("ab") as log:
                self.processes[service] = subprocess.Popen(command, env=planned.env, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for service in services:
            while not self.planned[service].ready():
                code = self.processes[service].poll()
                if code is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{service} did not come back (exit {code}); the end of its log:\n"
                        + self.log(service).read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.05)

    def log(self, service: str) -> Path:
        return self.layout.root / f"{service}.log"

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown handler, no drain, no flush; whatever the process had in hand is gone."""
        process = self.processes[service]
        if process.poll() is not None:
            raise RuntimeError(f"{service} had died on its own (exit {process.returncode}) before it was killed")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.kills[service] += 1

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def cli_environment(self) -> dict[str, str]:
        """What `custody` commands run with: the same databases as the services, the operator's token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        env.update({env_prefix(s) + "DATABASE_URL": url for s, url in self.database_urls.items()})
        return env


@contextmanager
def crash_stack(root: Path, backend: str, postgres_dsn: str = "") -> Iterator[CrashStack]:
    """Initialises a state directory (with a second person, a reviewer, for four eyes), plans every service on free
    ports, starts runs and lineage, and stops them (and drops the PostgreSQL schemas) at the end."""
    layout = StateLayout(root / "var")
    initialize(layout)
    reviewer_token = add_user(layout, REVIEWER, [REVIEWER_ROLE])
    with _databases(root, backend, postgres_dsn) as urls:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        for service in SERVICE_NAMES:
            environ[env_prefix(service) + "PORT"] = str(free_port())
        for service in KILLABLE:
            environ.update({env_prefix(service) + k: v for k, v in SETTINGS.items()})
            if service in urls:
                environ[env_prefix(service) + "DATABASE_URL"] = urls[service]
        planned = {p.service: p for p in plan(layout, environ)}
        for service in KILLABLE:  # a process that dies on its own (not of SIGKILL) says where
            planned[service].env["PYTHONFAULTHANDLER"] = "1"
        stack = CrashStack(layout, urls, reviewer_token, planned)
        save_endpoints(layout, stack.addresses)  # where `custody runs verify` finds runs
        try:
            stack.start(*KILLABLE)
            yield stack
        finally:
            stack.stop()


@contextmanager
def _databases(root: Path, backend: str, postgres_dsn: str) -> Iterator[dict[str, str]]:
    """service -> DATABASE_URL: empty for SQLite (each service's default file in the state directory)."""
    if backend == "sqlite":
        yield {}
        return
    if backend != "postgresql" or not postgres_dsn:
        raise ValueError("postgresql needs a DSN (--postgres-dsn or CUSTODY_TEST_POSTGRES_DSN)")
    admin = sa.create_engine(normalize_url(postgres_dsn))
    prefix = f"crash_{uuid.uuid4().hex[:10]}"
    schemas = {service: f"{prefix}_{service}" for service in KILLABLE}
    try:
        with admin.begin() as connection:
            for schema in schemas.values():
                connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield {service: _schema_url(postgres_dsn, schema) for service, schema in schemas.items()}
    finally:
        with admin.begin() as connection:
            for schema in schemas.values():
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def _schema_url(dsn: str, schema: str) -> str:
    url = normalize_url(dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)
