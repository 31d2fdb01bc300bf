"""What a ledger leaf says about a record, and how it is derived from the record's rows.

A leaf is the RFC 8785 canonical JSON of the record's kind and name, the principal that created it, the request
id, the time, and digests: the record's own content digest where it has one (a run's artifact_sha256, an
attachment's blob sha256) and `row_sha256`, the digest of every column of the rows that make up the record. The
writer derives a leaf from the rows it inserts (or, for records built from several tables' rows, by reading them
back inside the transaction that wrote them), and the audit derives it from the database later, with the same
code: any edit to any column of a recorded row changes the leaf the audit derives, so it no longer matches the
leaf the signed tree holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any, Protocol

import sqlalchemy as sa

from services.common.hashing import canonical_json, sha256_bytes, sha256_canonical

LEAF_VERSION = 1


@dataclass(frozen=True)
class LedgerPosition:
    """Where a record's leaf sits: what every minted record's response reports (proto LedgerEntry)."""

    origin: str
    leaf_index: int


@dataclass(frozen=True)
class Leaf:
    kind: str
    name: str
    time_us: int
    digests: Mapping[str, str]
    principal: str | None = None
    request_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "v": LEAF_VERSION,
            "kind": self.kind,
            "name": self.name,
            "time_us": self.time_us,
            "digests": dict(self.digests),
        }
        if self.principal is not None:
            document["principal"] = self.principal
        if self.request_id is not None:
            document["request_id"] = self.request_id
        return document

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())


def column_value(value: Any) -> Any:
    """A database value as JSON: bytes by their digest, exact decimals as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"sha256": sha256_bytes(bytes(value))}
    if isinstance(value, Decimal):
        return str(value)
    return value


def row_sha256(rows: Iterable[Mapping[str, Any]]) -> str:
    """The digest of rows, every column included, in the order given. Keys become plain `str`: SQLAlchemy names
    columns with a str subclass, which would send every row to the slow reference JCS encoder (same bytes)."""
    return sha256_canonical([{str(key): column_value(value) for key, value in row.items()} for row in rows])


class RecordSource(Protocol):
    """One kind of record: derives its leaves from the database, for the writer (some keys) and the audit (all)."""

    @property
    def kind(self) -> str: ...

    def leaves(self, connection: sa.Connection, keys: Sequence[tuple[Any, ...]] | None = None) -> Iterator[Leaf]:
        """Leaves of the records with these primary keys (all records when None), in ledger order."""
        ...


@dataclass(frozen=True)
class TableRecords:
    """Records that are one row each of one table (most of them): the leaf covers every column of the row."""

    kind: str
    table: sa.Table
    name: Callable[[Mapping[str, Any]], str]
    time_column: str
    principal_column: str | None = None
    request_id_column: str | None = None
    # Columns copied into the leaf's digests under their own names (content digests a verifier will compare).
    digest_columns: tuple[str, ...] = ()
    # Rows of other tables that belong to the record (e.g. a version's upstream edges), included in row_sha256.
    parts: (
        Callable[[sa.Connection, Sequence[Mapping[str, Any]]], Mapping[tuple[Any, ...], list[dict[str, Any]]]] | None
    ) = None
    order_by: tuple[str, ...] = field(default=())
    # Columns added to the table after rows were first recorded: left out of row_sha256 while NULL, so a row
    # recorded before the column existed keeps its leaf. A value in one is covered like every other column (and
    # NULL-ing it, or setting it on an old row, changes the leaf).
    added_columns: tuple[str, ...] = ()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.table.primary_key.columns)

    def key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[column] for column in self.key_columns)

    @cached_property
    def _all(self) -> sa.Select[Any]:
        order = self.order_by or (self.time_column, *self.key_columns)
        return sa.select(self.table).order_by(*(self.table.c[name] for name in order))

    @cached_property
    def _by_keys(self) -> sa.Select[Any]:
        columns = [self.table.c[name] for name in self.key_columns]
        # The first key column's IN is what an index serves: SQLite scans the whole table for a row-value IN.
        query = self._all.where(columns[0].in_(sa.bindparam("first", expanding=True)))
        if len(columns) > 1:
            query = query.where(sa.tuple_(*columns).in_(sa.bindparam("keys", expanding=True)))
        return query

    def leaves(self, connection: sa.Connection, keys: Sequence[tuple[Any, ...]] | None = None) -> Iterator[Leaf]:
        if keys is None:
            rows = connection.execute(self._all)
        elif not keys:
            return
        else:
            first = list(dict.fromkeys(k[0] for k in keys))
            rows = connection.execute(self._by_keys, {"first": first, "keys": list(keys)})
        for batch in _batches(rows.mappings(), 1000):
            parts = self.parts(connection, batch) if self.parts is not None else {}
            for row in batch:
                yield self.leaf(row, parts.get(self.key(row), []))

    def inserted(self, rows: Iterable[Mapping[str, Any]]) -> list[Leaf]:
        """Leaves of rows this transaction has just inserted, derived from the values as given: the leaves reading
        the rows back would derive, without the round trip (on PostgreSQL, a third of what the ledger cost a mint).
        That holds only when the row gives every column, under its name, as str, int or None, which every database
        hands back unchanged; anything else is refused (TypeError: a store passing it is a programming error, not a
        leaf the audit would later reject). Records with parts are read back (Ledger.record_all)."""
        if self.parts is not None:
            raise TypeError(f"{self.kind} records span several tables: read them back")
        names = self._column_names
        leaves = []
        for row in rows:
            if row.keys() != names:
                raise TypeError(f"{self.kind} row does not give exactly its columns: {sorted(set(row) ^ names)}")
            for column, value in row.items():
                if type(value) not in _EXACT_TYPES:
                    raise TypeError(f"{self.kind} column {column} holds a {type(value).__name__}, not str, int or None")
            leaves.append(self.leaf(row))
        return leaves

    @cached_property
    def _column_names(self) -> set[str]:
        return {column.name for column in self.table.columns}

    def leaf(self, row: Mapping[str, Any], parts: Sequence[Mapping[str, Any]] = ()) -> Leaf:
        columns = {k: v for k, v in row.items() if v is not None or k not in self.added_columns}
        digests = {name: str(row[name]) for name in self.digest_columns if name in columns}
        digests["row_sha256"] = row_sha256([columns, *parts])
        return Leaf(
            kind=self.kind,
            name=self.name(row),
            time_us=int(row[self.time_column]),
            digests=digests,
            principal=None if self.principal_column is None else str(row[self.principal_column]),
            request_id=None if self.request_id_column is None else str(row[self.request_id_column]),
        )


_EXACT_TYPES = (str, int, type(None))


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
