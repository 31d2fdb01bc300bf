"""The ledger's rows: one `ledger_leaves` table in each authority's own database, appended to in the record's
own transaction.

Leaf indexes are dense (0, 1, 2, ...) and assigned in commit order: the appender holds a lock until its
transaction ends (SQLite's write lock, which every writer takes; on PostgreSQL a transaction-scoped advisory
lock), reads the current size and inserts after it. So a committed record always has its leaf, a rolled-back one
never does, and no index is skipped. On PostgreSQL the size is read by the INSERT itself (INSERT ... SELECT from
max + 1), two statements in all: each round trip is what the ledger costs a mint there. The INSERT's snapshot is
taken after the lock statement returns, so it sees every leaf the previous holder committed.

The table is immutable like the records (triggers refuse UPDATE, DELETE and TRUNCATE; each service's migration
installs them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from services.common.db import insert_rows
from services.common.ledger.leaves import Leaf
from services.common.ledger.merkle import leaf_hash

TABLE_NAME = "ledger_leaves"
# Any 63-bit constant: the lock is per database, and each authority has its own database.
_PG_LOCK = 0x6C65646765720001


def ledger_table(metadata: sa.MetaData) -> sa.Table:
    """The table declaration each authority's tables.py includes (migrations spell it out, frozen)."""
    return sa.Table(
        TABLE_NAME,
        metadata,
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_name", sa.String(512), nullable=False, unique=True),
        # The leaf exactly as hashed (RFC 8785 canonical JSON) and its RFC 9162 leaf hash, hex.
        sa.Column("leaf_json", sa.Text, nullable=False),
        sa.Column("leaf_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )


@dataclass(frozen=True)
class StoredLeaf:
    index: int
    kind: str
    record_name: str
    leaf: bytes
    leaf_hash: bytes
    created_at_us: int


class LedgerRows:
    """Appends and reads leaves; `table` is the authority's declaration from ledger_table()."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table

    def append(self, connection: sa.Connection, leaves: Sequence[Leaf]) -> list[int]:
        """Appends leaves in order inside the caller's transaction; returns their indexes."""
        if not leaves:
            return []
        texts = [leaf.canonical() for leaf in leaves]
        if connection.dialect.name == "postgresql":
            start = self._append_postgresql(connection, leaves, texts)
            return list(range(start, start + len(leaves)))
        if not getattr(connection.connection.dbapi_connection, "in_transaction", True):
            # Nothing written yet, so pysqlite has not begun the transaction: take the write lock before reading the
            # size, or another process appending at once reads the same size and one of the two inserts fails.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        start = self.size(connection)
        rows = [
            {
                "leaf_index": start + offset,
                "kind": leaf.kind,
                "record_name": leaf.name,
                "leaf_json": text.decode("utf-8"),
                "leaf_sha256": leaf_hash(text).hex(),
                "created_at_us": leaf.time_us,
            }
            for offset, (leaf, text) in enumerate(zip(leaves, texts, strict=True))
        ]
        insert_rows(connection, self.table, rows)
        return [start + offset for offset in range(len(leaves))]

    def _append_postgresql(self, connection: sa.Connection, leaves: Sequence[Leaf], texts: Sequence[bytes]) -> int:
        """Lock, then one INSERT that numbers the leaves after the current size (unnest keeps their order);
        returns the first index."""
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        found = connection.exec_driver_sql(
            f"WITH size AS (SELECT coalesce(max(leaf_index) + 1, 0) AS start FROM {self.table.name}), "
            f"added AS (INSERT INTO {self.table.name} "
            "(leaf_index, kind, record_name, leaf_json, leaf_sha256, created_at_us) "
            "SELECT size.start + leaf.position - 1, leaf.kind, leaf.record_name, leaf.leaf_json, leaf.leaf_sha256, "
            "leaf.created_at_us FROM size, unnest(%(kinds)s::text[], %(names)s::text[], %(jsons)s::text[], "
            "%(hashes)s::text[], %(times)s::bigint[]) WITH ORDINALITY "
            "AS leaf(kind, record_name, leaf_json, leaf_sha256, created_at_us, position) RETURNING leaf_index) "
            "SELECT min(leaf_index) FROM added",
            {
                "kinds": [leaf.kind for leaf in leaves],
                "names": [leaf.name for leaf in leaves],
                "jsons": [text.decode("utf-8") for text in texts],
                "hashes": [leaf_hash(text).hex() for text in texts],
                "times": [leaf.time_us for leaf in leaves],
            },
        ).scalar_one()
        return int(found)

    def size(self, connection: sa.Connection) -> int:
        found = connection.execute(sa.select(sa.func.max(self.table.c.leaf_index))).scalar_one_or_none()
        return 0 if found is None else int(found) + 1

    def hashes(self, connection: sa.Connection, start: int, end: int) -> list[bytes]:
        """Leaf hashes of [start, end) as stored, in index order (a gap ends the list early)."""
        rows = connection.execute(
            sa.select(self.table.c.leaf_index, self.table.c.leaf_sha256)
            .where(self.table.c.leaf_index >= start, self.table.c.leaf_index < end)
            .order_by(self.table.c.leaf_index)
        )
        found: list[bytes] = []
        for index, digest in rows:
            if index != start + len(found):
                break
            found.append(bytes.fromhex(digest))
        return found

    def by_name(self, connection: sa.Connection, record_name: str) -> StoredLeaf | None:
        row = connection.execute(sa.select(self.table).where(self.table.c.record_name == record_name)).first()
        return None if row is None else _stored(row)

    def by_index(self, connection: sa.Connection, index: int) -> StoredLeaf | None:
        row = connection.execute(sa.select(self.table).where(self.table.c.leaf_index == index)).first()
        return None if row is None else _stored(row)

    def indexes(self, connection: sa.Connection, record_names: Sequence[str]) -> dict[str, int]:
        """Leaf index of each named record that has one."""
        if not record_names:
            return {}
        rows = connection.execute(
            sa.select(self.table.c.record_name, self.table.c.leaf_index).where(
                self.table.c.record_name.in_(list(record_names))
            )
        )
        return {name: int(index) for name, index in rows}

    def all(self, connection: sa.Connection) -> Iterator[StoredLeaf]:
        for row in connection.execute(sa.select(self.table).order_by(self.table.c.leaf_index)):
            yield _stored(row)


def _stored(row: Any) -> StoredLeaf:
    return StoredLeaf(
        index=int(row.leaf_index),
        kind=row.kind,
        record_name=row.record_name,
        leaf=row.leaf_json.encode("utf-8"),
        leaf_hash=bytes.fromhex(row.leaf_sha256),
        created_at_us=int(row.created_at_us),
    )
