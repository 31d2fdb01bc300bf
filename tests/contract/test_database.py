"""The storage foundation, on SQLite and PostgreSQL: engines, durability settings and database-enforced
immutability (a create-only table refuses UPDATE and DELETE whoever asks, ORM or raw SQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.common.db import create_engine, describe, make_immutable, normalize_url

RECORDS = sa.Table(
    "records",
    sa.MetaData(),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)


def _records_engine(url: str) -> Iterator[sa.Engine]:
    engine = create_engine(url)
    with engine.begin() as connection:
        RECORDS.create(connection)
        make_immutable(connection, "records")
        connection.execute(RECORDS.insert().values(id="r1", body="original"))
    yield engine
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    yield from _records_engine(database_url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    yield from _records_engine(sqlite_url)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    yield from _records_engine(postgres_url)


def test_rows_can_be_created_and_read(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(RECORDS.insert().values(id="r2", body="second"))
    with engine.connect() as connection:
        assert connection.execute(sa.select(RECORDS.c.body).order_by(RECORDS.c.id)).scalars().all() == [
            "original",
            "second",
        ]


def test_update_of_an_immutable_row_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.execute(RECORDS.update().where(RECORDS.c.id == "r1").values(body="tampered"))
    with engine.connect() as connection:
        assert connection.execute(sa.select(RECORDS.c.body)).scalar_one() == "original"


def test_delete_of_an_immutable_row_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.execute(RECORDS.delete())
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(RECORDS)).scalar_one() == 1


def test_raw_sql_cannot_bypass_immutability(engine: sa.Engine) -> None:
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.exec_driver_sql("UPDATE records SET body = 'tampered'")


def test_duplicate_key_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(RECORDS.insert().values(id="r1", body="again"))


def test_sqlite_runs_in_wal_mode_with_full_sync(sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_postgres_truncate_is_refused(postgres_engine: sa.Engine) -> None:
    with pytest.raises(DBAPIError, match="immutable"), postgres_engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE records")


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"


def test_described_url_hides_the_password() -> None:
    assert "s3cret" not in describe("postgresql://user:s3cret@db:5432/custody")


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        create_engine("mysql://u@h/db")
