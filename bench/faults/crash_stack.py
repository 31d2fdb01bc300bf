"""The services a crash harness kills: runs and lineage as `custody serve` processes (the outage harnesses'
ServiceProcess: a fixed port, so a restarted service comes back where its clients and peers expect it), on a fresh
state directory and fresh databases.

On PostgreSQL every service gets a schema of its own in the given database (each service owns its database; a schema
is the cheapest fresh one), dropped when the harness ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.faults.processes import ServiceProcess
from services.cli.people import add_user
from services.cli.registry import settings_class
from services.cli.state import StateLayout, initialize, save_endpoints
from services.common.config import env_prefix
from services.common.db import normalize_url
from services.common.identity import REVIEWER_ROLE
from services.runs.config import RunsSettings

KILLABLE = ("runs", "lineage")
REVIEWER = "crash-reviewer"
# Checkpoints signed every second, so kills land while checkpoint files are being written too.
SETTINGS = {"log_level": "ERROR", "ledger_checkpoint_interval_s": "1"}


@dataclass
class CrashStack:
    layout: StateLayout
    database_urls: dict[str, str]
    reviewer_token: str
    processes: dict[str, ServiceProcess]
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KILLABLE, 0))

    @property
    def operator_token(self) -> str:
        return self.layout.operator_token.read_text(encoding="utf-8").strip()

    @property
    def addresses(self) -> dict[str, str]:
        return {service: self.address(service) for service in KILLABLE}

    def address(self, service: str) -> str:
        return self.processes[service].address

    @property
    def runs_settings(self) -> RunsSettings:
        """runs' settings as the process loads them (its database and blob directory)."""
        environ = {env_prefix("runs") + "STATE_DIR": str(self.layout.root)}
        if "runs" in self.database_urls:
            environ[env_prefix("runs") + "DATABASE_URL"] = self.database_urls["runs"]
        settings = settings_class("runs").load(self.layout.service_config("runs"), environ)
        assert isinstance(settings, RunsSettings)
        return settings

    def start(self, *services: str) -> None:
        """Starts the services side by side and waits until each is SERVING."""
        for service in services:
            self.processes[service].launch()
        for service in services:
            self.processes[service].wait_ready()

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown handler, no drain, no flush; whatever the process had in hand is gone."""
        process = self.processes[service]
        if not process.alive():
            raise RuntimeError(f"{service} had died on its own before it was killed; see {process.log}")
        process.kill()
        self.kills[service] += 1

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()

    def cli_environment(self) -> dict[str, str]:
        """What `custody` commands run with: the same databases as the services, the operator's token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        env.update({env_prefix(s) + "DATABASE_URL": url for s, url in self.database_urls.items()})
        return env


@contextmanager
def crash_stack(root: Path, backend: str, postgres_dsn: str = "") -> Iterator[CrashStack]:
    """Initialises a state directory (with a second person, a reviewer, for four eyes), starts lineage and runs
    (pointed at lineage) on ports of their own, and stops them (and drops the PostgreSQL schemas) at the end."""
    layout = StateLayout(root / "var")
    initialize(layout)
    reviewer_token = add_user(layout, REVIEWER, [REVIEWER_ROLE])
    with _databases(root, backend, postgres_dsn) as urls:
        settings = {s: {**SETTINGS, **({"database_url": urls[s]} if s in urls else {})} for s in KILLABLE}
        lineage = ServiceProcess("lineage", layout.root, settings["lineage"])
        runs = ServiceProcess("runs", layout.root, {**settings["runs"], "lineage_address": lineage.address})
        stack = CrashStack(layout, urls, reviewer_token, {"runs": runs, "lineage": lineage})
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
