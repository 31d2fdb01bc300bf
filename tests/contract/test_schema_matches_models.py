"""Every stateful service's migrated database is exactly the schema its store is written against, on both backends.

A column added to a model without a revision passes on a fresh database only if the migrations build tables from
the model; they spell out their tables instead, so Alembic's autogenerate comparison of the migrated database with
the model's metadata is the guard. It compares tables, columns (with their types), nullability, indexes, unique
constraints and foreign keys. Triggers and trigger functions (immutability, run seals) are not reflected by
SQLAlchemy, so they are outside this comparison; tests/contract/test_migrations.py and each store's tests cover
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from services.ai_gateway import tables as ai_gateway_tables
from services.common import migrations
from services.common.db import create_engine
from services.lineage import tables as lineage_tables
from services.runs import tables as runs_tables

MODELS: dict[str, sa.MetaData] = {
    "ai_gateway": ai_gateway_tables.metadata,
    "runs": runs_tables.metadata,
    "lineage": lineage_tables.metadata,
}


def describe(difference: Any) -> tuple[str, str]:
    """(kind, object) for one compare_metadata entry; modify_* entries come as lists of tuples."""
    if isinstance(difference, list):
        kind, *_, table, column, _options, before, after = difference[0]
        return kind, f"{table}.{column}: {before!r} -> {after!r}"
    kind, subject = difference[0], difference[1]
    if kind in ("add_fk", "remove_fk"):
        source = ", ".join(c.name for c in subject.columns)
        target = ", ".join(e.column.name for e in subject.elements)
        return kind, f"{subject.parent.name}({source}) -> {subject.referred_table.name}({target})"
    if kind in ("add_column", "remove_column"):
        return kind, f"{difference[2]}.{difference[3].name}"
    return kind, str(getattr(subject, "name", subject))


def schema_differences(engine: sa.Engine, service: str, metadata: sa.MetaData) -> set[tuple[str, str]]:
    version_table = f"{service}_alembic_version"

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return not (type_ == "table" and name == version_table)  # Alembic's own bookkeeping, not the service's

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True, "include_name": include_name}
        )
        return {describe(d) for d in compare_metadata(context, metadata)}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("service", sorted(MODELS))
def test_the_migrated_schema_equals_the_model(engine: sa.Engine, service: str) -> None:
    migrations.upgrade(engine, service)
    assert schema_differences(engine, service, MODELS[service]) == set()


def drifted(metadata: sa.MetaData, table: str, column: sa.Column[Any]) -> sa.MetaData:
    copy = sa.MetaData()
    for each in metadata.tables.values():
        each.to_metadata(copy)
    copy.tables[table].append_column(column)
    return copy


@pytest.mark.parametrize("service", sorted(MODELS))
def test_a_column_the_model_gained_without_a_revision_is_reported(engine: sa.Engine, service: str) -> None:
    migrations.upgrade(engine, service)
    table = sorted(MODELS[service].tables)[0]
    model = drifted(MODELS[service], table, sa.Column("added_later", sa.Text, nullable=True))
    assert ("add_column", f"{table}.added_later") in schema_differences(engine, service, model)


def test_a_column_whose_type_changed_in_the_model_is_reported(engine: sa.Engine) -> None:
    migrations.upgrade(engine, "runs")
    model = sa.MetaData()
    for each in runs_tables.metadata.tables.values():
        each.to_metadata(model)
    model.tables["runs"].c.mode.type = sa.String(64)
    differences = schema_differences(engine, "runs", model)
    assert any(kind == "modify_type" and subject.startswith("runs.mode:") for kind, subject in differences)
