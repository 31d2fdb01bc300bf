"""The services work as their runtime roles: each database migrated by `custody migrate` as its owner role, then
the four services as real processes (`custody up`) connected as runtime roles that may only read, append and
compare-and-set, running the whole governed demo: mints with ledger appends (the ledger's advisory lock), attachments
through the seal triggers, explanation and outbox compare-and-sets, approvals and staleness. And a service told to
migrate at start-up with only its runtime role's URL refuses to start, saying what to do."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.harness import service_process
from services.common.catalog import SERVICES
from services.common.config import env_prefix
from tests.support.harness import state_layout
from tests.support.pg_roles import Provisioned, Roles, roles, schema_owners
from tests.support.processes import CUSTODY, clean_environment, custody, free_port, running_stack

pytestmark = pytest.mark.stack

STATEFUL = [name for name, spec in SERVICES.items() if spec.stateful]


@pytest.fixture
def made() -> Iterator[Roles]:
    with roles() as found:
        yield found


def migrate_as_owner(database: Provisioned) -> subprocess.CompletedProcess[str]:
    prefix = env_prefix(database.service)
    env = clean_environment(
        **{
            prefix + "MIGRATION_DATABASE_URL": database.owner_url,
            prefix + "DATABASE_RUNTIME_ROLE": database.runtime.role,
        }
    )
    return custody("migrate", database.service, env=env)


def count(admin: sa.Engine, database: Provisioned, query: str) -> int:
    with admin.connect() as connection:
        connection.exec_driver_sql(f"SET search_path TO {database.schema}")
        return int(connection.exec_driver_sql(query).scalar_one())


def eventually(read: Callable[[], object], expected: object, timeout_s: float = 30) -> None:
    """Polls `read()` until it returns `expected` (deliveries are asynchronous); asserts on the last value."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    assert value == expected


def test_the_governed_demo_runs_with_every_service_connected_as_its_runtime_role(made: Roles, tmp_path: Path) -> None:
    databases = {service: made.provision(service) for service in STATEFUL}
    for database in databases.values():
        result = migrate_as_owner(database)
        assert result.returncode == 0, result.stderr
        assert f"runtime role {database.runtime.role} granted its privileges" in result.stdout
    runtime = {}
    for service, database in databases.items():
        prefix = env_prefix(service)
        runtime[prefix + "DATABASE_URL"] = database.runtime_url
        runtime[prefix + "AUTO_MIGRATE"] = "false"
    with running_stack(tmp_path, **runtime) as stack:
        result = custody("demo", "--json", "--state-dir", str(stack.state_dir), env=clean_environment(), timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is True, report["steps"]
        runs, lineage, gateway = databases["runs"], databases["lineage"], databases["ai_gateway"]
        # The outbox's compare-and-set: every message the mints queued reaches lineage and is marked delivered.
        eventually(lambda: count(made.admin, runs, "SELECT count(*) FROM outbox WHERE state <> 'DELIVERED'"), 0)
        stack.stop()
    log = stack.stderr_path.read_text()
    assert "permission denied" not in log and "InsufficientPrivilege" not in log
    admin = made.admin
    assert count(admin, runs, "SELECT count(*) FROM outbox") > 0
    assert count(admin, runs, "SELECT count(*) FROM run_explanations WHERE status = 'READY'") >= 1
    assert count(admin, runs, "SELECT count(*) FROM attachments") > 0
    assert count(admin, lineage, "SELECT count(*) FROM lineage_health WHERE health = 'stale'") >= 2
    assert count(admin, lineage, "SELECT count(*) FROM lineage_status WHERE revision > 1") >= 1
    for database in databases.values():
        assert count(admin, database, "SELECT count(*) FROM ledger_leaves") > 0
    assert count(admin, gateway, "SELECT count(*) FROM ai_calls") > 0


def test_a_service_migrating_at_start_up_as_its_runtime_role_refuses_to_start_saying_what_to_do(
    made: Roles, tmp_path: Path
) -> None:
    database = made.provision("runs")
    layout = state_layout(tmp_path / "var")
    env = clean_environment(
        CUSTODY_RUNS_PORT=str(free_port()),
        CUSTODY_RUNS_STATE_DIR=str(layout.root),
        CUSTODY_RUNS_DATABASE_URL=database.runtime_url,
    )
    command = [*CUSTODY, "serve", "runs", "--config", str(layout.service_config("runs"))]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    assert f"the database role {database.runtime.role!r} may not migrate this schema" in result.stderr
    assert "CUSTODY_RUNS_MIGRATION_DATABASE_URL" in result.stderr and "CUSTODY_RUNS_AUTO_MIGRATE=false" in result.stderr
    assert database.runtime.password not in result.stderr


def test_custody_migrate_as_the_runtime_role_is_refused_saying_what_to_do(made: Roles) -> None:
    database = made.provision("lineage")
    result = custody("migrate", "lineage", env=clean_environment(CUSTODY_LINEAGE_DATABASE_URL=database.runtime_url))
    assert result.returncode == 1
    assert "migration refused" in result.stderr and "CUSTODY_LINEAGE_MIGRATION_DATABASE_URL" in result.stderr


def test_a_service_given_both_urls_migrates_as_the_owner_and_serves_as_the_runtime_role(
    made: Roles, tmp_path: Path
) -> None:
    database = made.provision("lineage")
    settings = {
        "database_url": database.runtime_url,
        "migration_database_url": database.owner_url,
        "database_runtime_role": database.runtime.role,
    }

    def sessions() -> set[str]:
        with made.admin.connect() as connection:
            return set(
                connection.execute(
                    sa.text("SELECT usename FROM pg_stat_activity WHERE usename LIKE :prefix"),
                    {"prefix": f"{made.prefix}%"},
                ).scalars()
            )

    with service_process("lineage", tmp_path / "var", **settings):
        eventually(sessions, {database.runtime.role})
    assert schema_owners(made.admin, database.schema) == {database.owner.role}
