"""Database roles without a database: which runtime role the settings name, the declarations that say what it
may do (checked when a service's tables are imported), and SQLite, which has no roles."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common import migrations
from services.common.config import ConfigError
from services.common.db import create_engine
from services.common.roles import RuntimeAccess
from services.lineage.config import LineageSettings
from services.runs.config import RunsSettings

OWNER_URL = "postgresql://custody_runs:pw@db:5432/custody_runs"


def test_one_database_url_means_one_role_and_nothing_to_grant() -> None:
    settings = RunsSettings.load(environ={"CUSTODY_RUNS_DATABASE_URL": OWNER_URL})
    assert settings.resolved_runtime_role is None


def test_with_a_migration_url_the_runtime_role_defaults_to_the_services_own() -> None:
    settings = RunsSettings.load(environ={"CUSTODY_RUNS_MIGRATION_DATABASE_URL": OWNER_URL})
    assert settings.resolved_runtime_role == "custody_runs_runtime"


def test_a_named_runtime_role_wins() -> None:
    environ = {"CUSTODY_LINEAGE_MIGRATION_DATABASE_URL": OWNER_URL, "CUSTODY_LINEAGE_DATABASE_RUNTIME_ROLE": "app_rw"}
    assert LineageSettings.load(environ=environ).resolved_runtime_role == "app_rw"


@pytest.mark.parametrize("setting", ["DATABASE_RUNTIME_ROLE", "DATABASE_OWNER_ROLE"])
@pytest.mark.parametrize("name", ['x"; DROP TABLE runs; --', "Runtime", "9lives", ""])
def test_a_role_name_that_would_need_quoting_is_refused_naming_the_variable(setting: str, name: str) -> None:
    with pytest.raises(ConfigError, match=f"CUSTODY_RUNS_{setting}"):
        RunsSettings.load(environ={f"CUSTODY_RUNS_{setting}": name})


def table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))


def test_a_declaration_gives_select_and_insert_everywhere_and_only_the_named_changes() -> None:
    metadata = sa.MetaData()
    for name in ("records", "state", "cache"):
        table(metadata, name)
    access = RuntimeAccess(metadata, ("records",), update=frozenset({"state"}), delete=frozenset({"cache"}))
    assert access.privileges == {
        "cache": ("SELECT", "INSERT", "DELETE"),
        "records": ("SELECT", "INSERT"),
        "state": ("SELECT", "INSERT", "UPDATE"),
    }


def test_a_table_neither_immutable_nor_declared_mutable_is_refused() -> None:
    metadata = sa.MetaData()
    table(metadata, "records")
    table(metadata, "forgotten")
    with pytest.raises(ValueError, match="forgotten: neither immutable nor declared mutable"):
        RuntimeAccess(metadata, ("records",))


def test_an_immutable_table_the_runtime_may_change_is_refused() -> None:
    metadata = sa.MetaData()
    table(metadata, "records")
    with pytest.raises(ValueError, match="records: immutable, yet the runtime may change it"):
        RuntimeAccess(metadata, ("records",), update=frozenset({"records"}))


def test_a_declared_table_the_schema_does_not_have_is_refused() -> None:
    metadata = sa.MetaData()
    table(metadata, "records")
    with pytest.raises(ValueError, match="recrods: not a table of this schema"):
        RuntimeAccess(metadata, ("records",), delete=frozenset({"recrods"}))


@pytest.mark.parametrize("service", ["ai_gateway", "runs", "lineage"])
def test_sqlite_has_no_roles_and_says_that_file_permissions_are_its_boundary(tmp_path: Path, service: str) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/{service}.db")
    try:
        with pytest.raises(migrations.MigrationError, match=r"SQLite has none .*file.s permissions"):
            migrations.upgrade(engine, service, runtime_role=f"custody_{service}_runtime")
        assert migrations.current_revision(engine, service) is None
    finally:
        engine.dispose()
