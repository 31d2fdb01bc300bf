"""Database engines and the DDL that makes immutable tables immutable in the database itself.

SQLite is the embedded default (WAL checkpointed beside the writers, synchronous=FULL, a busy timeout, foreign
keys on); PostgreSQL is the scale-out backend. Only a service's store module uses these; nothing else touches
a database.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine, make_url

log = logging.getLogger("custody.db")

SQLITE_BUSY_TIMEOUT_MS = 10_000
WAL_BACKSTOP_PAGES = 10_000


def normalize_url(url: str) -> URL:
    """Accepts plain `postgresql://` / `postgres://` URLs and picks the psycopg 3 driver for them."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_engine(url: str) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _configure_sqlite)
        if parsed.database and parsed.database != ":memory:":
            _WalCheckpointer.start(engine, parsed.database)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")


def insert_rows(connection: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERTs `rows` (every column given, by column key) with one driver executemany: the statement SQLAlchemy
    compiles and its bind processors, without its per-row execution machinery, which costs more than the database
    does on hot append-only paths."""
    sql, names, processors = _insert_statement(table, connection.dialect)
    if processors:
        rows = [{**row, **{name: process(row[name]) for name, process in processors.items()}} for row in rows]
    parameters: list[Any] = [tuple(row[name] for name in names) for row in rows] if names else list(rows)
    connection.exec_driver_sql(sql, parameters)


def fetch_plain(connection: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of `query` as the driver returns them, plain tuples without SQLAlchemy's per-row result machinery
    (which costs more than the database does on reads of many rows): for columns that need no result processing,
    such as integers and text. The statement still runs through the connection (its events and transaction)."""
    compiled = query.compile(dialect=connection.dialect)
    values = compiled.construct_params()
    parameters: Any = tuple(values[name] for name in compiled.positiontup or ()) if compiled.positional else values
    result = connection.exec_driver_sql(str(compiled), parameters)
    try:
        return list(result.cursor.fetchall()) if result.cursor is not None else []
    finally:
        result.close()


def insert_if_absent(connection: sa.Connection, table: sa.Table) -> sa.Insert:
    """INSERT ... ON CONFLICT DO NOTHING, spelled for the connection's database."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def keyset(
    query: sa.Select[Any],
    time: sa.ColumnElement[int],
    ident: sa.ColumnElement[str],
    after: Sequence[Any] | None,
    limit: int,
    newest_first: bool,
) -> sa.Select[Any]:
    """Orders by (time, id) and starts strictly after the cursor (time, id) of the previous page."""
    if after is not None:
        created_us, last_id = after
        if newest_first:
            query = query.where(sa.or_(time < created_us, sa.and_(time == created_us, ident < last_id)))
        else:
            query = query.where(sa.or_(time > created_us, sa.and_(time == created_us, ident > last_id)))
    order = (time.desc(), ident.desc()) if newest_first else (time, ident)
    return query.order_by(*order).limit(limit)


_InsertStatement = tuple[str, tuple[str, ...], dict[str, Callable[[Any], Any]]]
_insert_statements: dict[tuple[sa.Table, str], _InsertStatement] = {}


def _insert_statement(table: sa.Table, dialect: Dialect) -> _InsertStatement:
    """(SQL in the driver's parameter style, parameter order if positional, bind processors by column)."""
    key = (table, dialect.name)
    found = _insert_statements.get(key)
    if found is None:
        compiled = table.insert().compile(dialect=dialect)
        names = tuple(compiled.positiontup or ()) if compiled.positional else ()
        processors: dict[str, Callable[[Any], Any]] = {}
        for column in table.columns:
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[column.key] = process
        found = (str(compiled), names, processors)
        _insert_statements[key] = found
    return found


def _configure_sqlite(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Commits do not checkpoint: copying the WAL into the database and fsyncing it takes milliseconds, and the
    # commit that crossed SQLite's default threshold (1,000 pages) would wait for it, about 1 in 100 of them.
    # _WalCheckpointer does it beside them; the high threshold is only a backstop should it stop.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
    cursor.close()


class _WalCheckpointer:
    """Checkpoints a SQLite database's WAL from a thread and connection of its own, beside the writers.

    PASSIVE checkpoints block neither readers nor writers, and writers restart the WAL from its beginning once a
    checkpoint has caught up, so it stays about as large as half a second of writes. The thread ends with its
    engine (disposed or collected) or its database file."""

    INTERVAL_S = 0.5

    @classmethod
    def start(cls, engine: Engine, path: str) -> None:
        stop = threading.Event()
        sa.event.listen(engine, "engine_disposed", lambda _engine: stop.set())
        alive = weakref.ref(engine)
        threading.Thread(target=cls._run, args=(path, stop, alive), name="sqlite-checkpoint", daemon=True).start()

    @staticmethod
    def _run(path: str, stop: threading.Event, alive: weakref.ref[Engine]) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not stop.wait(_WalCheckpointer.INTERVAL_S) and alive() is not None:
                if not Path(path).exists():
                    if connection is not None:
                        return  # the database was removed
                    continue  # not created yet
                try:
                    if connection is None:
                        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except (sqlite3.Error, OSError) as exc:  # e.g. busy past the timeout: try again next round
                    log.warning("WAL checkpoint of %s failed: %s", path, exc)
        finally:
            if connection is not None:
                connection.close()


PG_REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION custody_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is immutable: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$
"""


def immutable_table_ddl(dialect: str, table: str) -> list[str]:
    """Statements that make the database itself refuse UPDATE and DELETE (and TRUNCATE) on `table`."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is immutable: UPDATE refused'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is immutable: DELETE refused'); END",
        ]
    if dialect == "postgresql":
        return [
            PG_REFUSE_FUNCTION,
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION custody_refuse_change()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change()",
        ]
    raise ValueError(f"no immutability triggers for dialect {dialect!r}")


def make_immutable(connection: sa.Connection, table: str) -> None:
    """Applies immutable_table_ddl for the connection's dialect (used by migrations)."""
    for statement in immutable_table_ddl(connection.dialect.name, table):
        connection.execute(sa.text(statement))


def check_connection(engine: Engine) -> None:
    """Fails fast at start-up with the driver's own message when the database is unreachable."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


def describe(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return normalize_url(url).render_as_string(hide_password=True)
