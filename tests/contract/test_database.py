"""The storage foundation, on SQLite and PostgreSQL: engines, durability settings and database-enforced
immutability (a create-only table refuses UPDATE and DELETE whoever asks, ORM or raw SQL)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.common.db import WAL_BACKSTOP_PAGES, create_engine, describe, insert_rows, make_immutable, normalize_url

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


def test_insert_rows_stores_every_row_like_a_core_insert(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, RECORDS, [{"id": "r2", "body": "two"}, {"id": "r3", "body": "three"}])
    with engine.connect() as connection:
        rows = connection.execute(sa.select(RECORDS).order_by(RECORDS.c.id)).all()
    assert [tuple(row) for row in rows] == [("r1", "original"), ("r2", "two"), ("r3", "three")]


def test_sqlite_commits_leave_checkpoints_to_the_background(sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == WAL_BACKSTOP_PAGES


def test_sqlite_wal_reaches_the_database_file_without_a_commit_checkpointing(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as connection:
        insert_rows(connection, RECORDS, [{"id": f"w{i}", "body": "x" * 500} for i in range(200)])
    database = Path(sqlite_engine.url.database or "")
    deadline = time.monotonic() + 10
    found = 0
    while found < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        snapshot = tmp_path / "main-file-only.db"  # the database file alone: what is not checkpointed is missing
        shutil.copyfile(database, snapshot)
        with contextlib.closing(sqlite3.connect(snapshot)) as copy, contextlib.suppress(sqlite3.OperationalError):
            found = copy.execute("SELECT count(*) FROM records WHERE id LIKE 'w%'").fetchone()[0]  # no table yet
    assert found == 200


def test_the_sqlite_checkpointer_stops_with_its_engine(sqlite_url: str) -> None:
    existing = set(threading.enumerate())
    engine = create_engine(sqlite_url)
    (checkpointer,) = [t for t in threading.enumerate() if t not in existing and t.name == "sqlite-checkpoint"]
    engine.dispose()
    checkpointer.join(timeout=5)
    assert not checkpointer.is_alive()


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
