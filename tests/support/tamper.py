"""Tampering with a database as someone with write access to it would: drop a table's immutability triggers,
change one row, restore the triggers. Each operation knows how to undo itself, so one database serves many trials.

Operations: edit one column of one row, delete one row, insert a copy of a row under a new key, and reorder (swap
everything but the key between two rows). The ledger tests run each against every immutable table and count how
many the offline audit reports: all of them, or the test fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

KINDS = ("edit", "delete", "insert", "reorder")


@contextmanager
def triggers_dropped(engine: sa.Engine, table: str) -> Iterator[sa.Connection]:
    """A transaction in which `table` has no triggers (immutability, seals) and no foreign keys are enforced, as
    for someone with write access to the database; the triggers are back, as they were, after."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or it is ignored
            triggers = connection.execute(
                sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
            ).all()
            for name, _ in triggers:
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        try:
            yield connection
        except BaseException:
            connection.rollback()  # the change only; dropping the triggers was its own (DDL) statement
            raise
        finally:
            if sqlite:
                for _, sql in triggers:
                    connection.exec_driver_sql(sql)
            else:
                connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
            connection.commit()
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")


@dataclass
class Tampering:
    table: str
    kind: str
    description: str
    undo: Callable[[sa.Connection], None]


def tamper(engine: sa.Engine, table: sa.Table, kind: str, rng: random.Random) -> Tampering | None:
    """Applies one `kind` of change to `table`, committed; None when the table cannot take it (too few rows, or
    every candidate change broke a constraint)."""
    for _ in range(20):
        try:
            with triggers_dropped(engine, table.name) as connection:
                done = _OPERATIONS[kind](connection, table, rng)
            if done is not None:
                return done
        except IntegrityError:
            continue
    return None


def undo(engine: sa.Engine, tampering: Tampering) -> None:
    with triggers_dropped(engine, tampering.table) as connection:
        tampering.undo(connection)


def _rows(connection: sa.Connection, table: sa.Table) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(sa.select(table)).mappings()]


def _where(table: sa.Table, row: dict[str, Any]) -> Any:
    return sa.and_(*(column == row[column.name] for column in table.primary_key.columns))


def _changed(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((-1, 1)) * rng.randint(1, 1000)
    if isinstance(value, Decimal):
        return value + 1
    if isinstance(value, bytes):
        if not value:
            return b"\x00"
        at = rng.randrange(len(value))
        return value[:at] + bytes([value[at] ^ (1 << rng.randrange(8))]) + value[at + 1 :]
    if isinstance(value, str):
        if not value:
            return "x"
        at = rng.randrange(len(value))
        replacement = "0" if value[at] != "0" else "1"
        return value[:at] + replacement + value[at + 1 :]
    if value is None:
        return None
    raise TypeError(f"cannot tamper with a {type(value).__name__}")


def _edit(connection: sa.Connection, table: sa.Table, rng: random.Random) -> Tampering | None:
    rows = _rows(connection, table)
    if not rows:
        return None
    row = rng.choice(rows)
    columns = [c.name for c in table.columns if row[c.name] is not None]
    column = rng.choice(columns)
    new = _changed(row[column], rng)
    connection.execute(table.update().where(_where(table, row)).values({column: new}))
    edited = {**row, column: new}

    def restore(c: sa.Connection) -> None:
        c.execute(table.update().where(_where(table, edited)).values({column: row[column]}))

    return Tampering(table.name, "edit", f"{table.name}.{column} of {_key(table, row)}", restore)


def _delete(connection: sa.Connection, table: sa.Table, rng: random.Random) -> Tampering | None:
    rows = _rows(connection, table)
    if not rows:
        return None
    row = rng.choice(rows)
    connection.execute(table.delete().where(_where(table, row)))
    return Tampering(
        table.name, "delete", f"{table.name} row {_key(table, row)}", lambda c: c.execute(table.insert(), row)
    )


def _insert(connection: sa.Connection, table: sa.Table, rng: random.Random) -> Tampering | None:
    rows = _rows(connection, table)
    if not rows:
        return None
    row = dict(rng.choice(rows))
    for column in table.primary_key.columns:
        value = row[column.name]
        if isinstance(value, int):
            row[column.name] = max(r[column.name] for r in rows) + 1
        else:
            row[column.name] = _changed(value, rng)
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            for column in constraint.columns:
                if column.name in row and not column.primary_key and isinstance(row[column.name], str):
                    row[column.name] = _changed(row[column.name], rng)
    for column in table.columns:
        if column.unique and isinstance(row[column.name], str):
            row[column.name] = _changed(row[column.name], rng)
    connection.execute(table.insert(), row)
    return Tampering(
        table.name,
        "insert",
        f"{table.name} row {_key(table, row)}",
        lambda c: c.execute(table.delete().where(_where(table, row))),
    )


def _reorder(connection: sa.Connection, table: sa.Table, rng: random.Random) -> Tampering | None:
    rows = _rows(connection, table)
    keys = [c.name for c in table.primary_key.columns]
    rest = [c.name for c in table.columns if c.name not in keys]
    candidates = [(a, b) for a in rows for b in rows if a is not b and any(a[k] != b[k] for k in rest)]
    if not candidates or not rest:
        return None
    first, second = rng.choice(candidates)
    _swap(connection, table, first, second, rest)
    return Tampering(
        table.name,
        "reorder",
        f"{table.name} rows {_key(table, first)} and {_key(table, second)} swapped",
        lambda c: _swap(c, table, first, second, rest),
    )


def _swap(
    connection: sa.Connection, table: sa.Table, first: dict[str, Any], second: dict[str, Any], rest: Sequence[str]
) -> None:
    """Swaps every non-key column of two rows (through a parking value for unique columns, and for the text
    columns of multi-column unique constraints)."""
    unique = [c.name for c in table.columns if c.unique and c.name in rest]
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            unique += [
                c.name
                for c in constraint.columns
                if c.name in rest and c.name not in unique and isinstance(first[c.name], str)
            ]
    if unique:
        parked = {name: f"parked-{name}" for name in unique}
        connection.execute(table.update().where(_where(table, first)).values(parked))
    connection.execute(table.update().where(_where(table, second)).values({k: first[k] for k in rest}))
    connection.execute(table.update().where(_where(table, first)).values({k: second[k] for k in rest}))
    first_values, second_values = {k: first[k] for k in rest}, {k: second[k] for k in rest}
    first.update(second_values)
    second.update(first_values)


def _key(table: sa.Table, row: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{c.name}={row[c.name]!r}"[:80] for c in table.primary_key.columns) + ")"


_OPERATIONS: dict[str, Callable[[sa.Connection, sa.Table, random.Random], Tampering | None]] = {
    "edit": _edit,
    "delete": _delete,
    "insert": _insert,
    "reorder": _reorder,
}


@dataclass
class Trials:
    """What `try_every` did: how many changes of each table and kind it applied, and those the audit missed."""

    tried: dict[str, int]
    missed: list[str]

    def untried(self, tables: Sequence[str]) -> list[str]:
        return [f"{name}.{kind}" for name in tables for kind in KINDS if f"{name}.{kind}" not in self.tried]


def try_every(
    engine: sa.Engine, metadata: sa.MetaData, tables: Sequence[str], audit_passes: Callable[[], bool], per_kind: int
) -> Trials:
    """Applies `per_kind` random changes of every kind to every table, one at a time, asking the audit after each
    (it must fail) and undoing it before the next; at the end the audit must pass again, or nothing was measured."""
    rng = random.Random(17)
    trials = Trials({}, [])
    for name in tables:
        for kind in KINDS:
            for _ in range(per_kind):
                done = tamper(engine, metadata.tables[name], kind, rng)
                if done is None:
                    continue
                trials.tried[f"{name}.{kind}"] = trials.tried.get(f"{name}.{kind}", 0) + 1
                if audit_passes():
                    trials.missed.append(done.description)
                undo(engine, done)
    assert audit_passes(), "undoing every change restores a clean audit"
    return trials
