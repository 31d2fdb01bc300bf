"""Schema migrations (Alembic) for a service's own database, run in-process, one migrator at a time.

Each stateful service keeps its revisions in `services/<service>/migrations/versions/`, with a two-line env.py
that calls `run_env()`. Replicas starting together serialise on a PostgreSQL advisory lock (SQLite serialises on
its write lock), so a migration is applied once. Kubernetes runs the same `custody migrate <service>` as a Job.

On PostgreSQL, migrations run as the owner role (`MIGRATION_DATABASE_URL`, else `DATABASE_URL`) and end, in the
same transaction, by granting the service's runtime role exactly what its tables declare (services/common/roles.py).
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
from sqlalchemy.exc import DBAPIError

from services.common.config import StatefulServiceSettings, env_prefix
from services.common.db import create_engine
from services.common.roles import RoleError, RuntimeAccess, grant_runtime

# PostgreSQL's SQLSTATEs for "permission denied" and "must be owner", and for "no schema has been selected to
# create in", which is what a role without USAGE on any schema of its search path gets.
NOT_ALLOWED = ("42501", "3F000")


class MigrationError(Exception):
    """The migration cannot run as configured (wrong role, missing role, over-privileged runtime role)."""


def _config(service: str, connection: sa.Connection | None = None) -> Config:
    package = importlib.import_module(f"services.{service}.migrations")
    config = Config()
    config.set_main_option("script_location", str(Path(package.__file__).parent))  # type: ignore[arg-type]
    config.set_main_option("version_table", version_table(service))
    config.attributes["connection"] = connection
    return config


def version_table(service: str) -> str:
    return f"{service}_alembic_version"


def runtime_access(service: str) -> RuntimeAccess:
    """The service's declaration of what its runtime role may do (RUNTIME_ACCESS beside its tables)."""
    access = importlib.import_module(f"services.{service}.tables").RUNTIME_ACCESS
    assert isinstance(access, RuntimeAccess)
    return access


def migrate(settings: StatefulServiceSettings, runtime_engine: sa.Engine | None = None) -> str | None:
    """Applies the service's migrations as its settings say: with the migration URL when one is set (else with
    `runtime_engine`, or the database URL), granting the runtime role its privileges; returns the role granted
    to, if any. Raises MigrationError."""
    url = settings.migration_database_url
    engine = create_engine(url or settings.resolved_database_url) if url or runtime_engine is None else runtime_engine
    try:
        return upgrade(
            engine,
            settings.service,
            runtime_role=settings.resolved_runtime_role,
            owner_role=settings.database_owner_role,
        )
    finally:
        if engine is not runtime_engine:
            engine.dispose()


def upgrade(
    engine: sa.Engine, service: str, *, runtime_role: str | None = None, owner_role: str | None = None
) -> str | None:
    """Brings the service's schema to the latest revision (a no-op when it is there already); on PostgreSQL as
    `owner_role` when given (SET ROLE), then grants `runtime_role` its privileges, at head too. Returns the role
    granted to: None without one, or when it is the role migrating (which then already holds everything)."""
    if engine.dialect.name != "postgresql" and (runtime_role or owner_role):
        raise MigrationError(
            f"{service}: database roles are PostgreSQL's; SQLite has none (its boundary is the database file's "
            f"permissions): unset {env_prefix(service)}DATABASE_RUNTIME_ROLE, DATABASE_OWNER_ROLE and "
            "MIGRATION_DATABASE_URL"
        )
    user, granted = "?", None
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                if owner_role:
                    quoted = connection.dialect.identifier_preparer.quote(owner_role)
                    connection.exec_driver_sql(f"SET LOCAL ROLE {quoted}")
                user = str(connection.exec_driver_sql("SELECT current_user").scalar_one())
                lock_key = zlib.crc32(f"custody-migrations-{service}".encode())
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key})")
            command.upgrade(_config(service, connection), "head")
            if runtime_role and runtime_role != user:
                grant_runtime(connection, runtime_access(service), version_table(service), runtime_role)
                granted = runtime_role
    except RoleError as exc:
        raise MigrationError(f"{service}: {exc}") from None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) not in NOT_ALLOWED:
            raise
        prefix = env_prefix(service)
        reason = str(exc.orig).splitlines()[0]
        raise MigrationError(
            f"{service}: the database role {user!r} may not migrate this schema ({reason}). Migrations run as the "
            f"schema's owner: set {prefix}MIGRATION_DATABASE_URL to the owner role's URL (`custody migrate "
            f"{service}` and start-up migration use it), or set {prefix}AUTO_MIGRATE=false and run `custody migrate "
            f"{service}` as the owner; the service itself runs as the runtime role ({prefix}DATABASE_URL)"
        ) from None
    return granted


def current_revision(engine: sa.Engine, service: str) -> str | None:
    with engine.connect() as connection:
        migration = MigrationContext.configure(connection, opts={"version_table": version_table(service)})
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
