"""Schema migrations (Alembic) for a service's own database, run in-process, one migrator at a time.

Each stateful service keeps its revisions in `services/<service>/migrations/versions/`, with a two-line env.py
that calls `run_env()`. Replicas starting together serialise on a PostgreSQL advisory lock (SQLite serialises on
its write lock), so a migration is applied once. Kubernetes runs the same `custody migrate <service>` as a Job.
"""

from __future__ import annotations

import importlib
import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


def _config(service: str, connection: sa.Connection | None = None) -> Config:
    package = importlib.import_module(f"services.{service}.migrations")
    config = Config()
    config.set_main_option("script_location", str(Path(package.__file__).parent))  # type: ignore[arg-type]
    config.set_main_option("version_table", f"{service}_alembic_version")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, service: str) -> None:
    """Brings the service's schema to the latest revision (a no-op when it is there already)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock_key = zlib.crc32(f"custody-migrations-{service}".encode())
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key})")
        command.upgrade(_config(service, connection), "head")


def current_revision(engine: sa.Engine, service: str) -> str | None:
    with engine.connect() as connection:
        migration = MigrationContext.configure(connection, opts={"version_table": f"{service}_alembic_version"})
        return migration.get_current_revision()


def head_revision(service: str) -> str | None:
    return ScriptDirectory.from_config(_config(service)).get_current_head()


def run_env() -> None:
    """Body of every service's migrations/env.py: runs online against the connection `upgrade` passed in."""
    connection = context.config.attributes["connection"]
    if connection is None:
        raise RuntimeError("run migrations through services.common.migrations.upgrade (or `custody migrate`)")
    context.configure(
        connection=connection,
        version_table=context.config.get_main_option("version_table"),
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
