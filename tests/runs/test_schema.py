"""The migrated runs database is exactly the schema the store is written against, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from services.common import migrations
from services.common.db import create_engine
from services.runs import tables


def test_migrations_produce_the_schema_the_store_uses(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        migrations.upgrade(engine, "runs")
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"include_name": _ours})
            differences = compare_metadata(context, tables.metadata)
    finally:
        engine.dispose()
    assert differences == []


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    return type_ != "table" or name in tables.metadata.tables


def test_the_comparison_notices_a_column_the_migrations_lack(sqlite_url: str) -> None:
    import sqlalchemy as sa

    drifted = sa.MetaData()
    for table in tables.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["runs"].append_column(sa.Column("added_later", sa.Text))
    engine = create_engine(sqlite_url)
    try:
        migrations.upgrade(engine, "runs")
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), drifted)
    finally:
        engine.dispose()
    assert any(d[0] == "add_column" and d[3].name == "added_later" for d in differences)
