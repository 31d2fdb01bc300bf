"""How every lineage write runs: one transaction, serialized per project, retried when it lost a uniqueness race.

Writes are serialized per project (a PostgreSQL advisory transaction lock; SQLite's write lock via BEGIN
IMMEDIATE), so a check and the write it guards cannot interleave with another write: an approval cannot slip past
a concurrent revision of its upstream, and staleness marking cannot miss a version being created. The lock is in
the database, so it holds across replicas too.

Each write ends by appending the leaves of the records it inserted to the ledger (`record`), in the same
transaction: a committed record always has its leaf, a rolled-back one never does. The append takes the ledger's
own per-database lock until commit, so it comes last, after every check and insert.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.errors import Aborted
from services.common.hashing import sha256_text
from services.common.ledger.leaves import Leaf, LedgerPosition, RecordSource
from services.common.ledger.ledger import Ledger, leaf_positions

CREATE_ATTEMPTS = 8
TYPE_LOCK = "lineage-types"

T = TypeVar("T")
# Records of one kind a transaction inserted: their source and primary keys, or a leaf built already.
Records = tuple[RecordSource, Sequence[tuple[Any, ...]]] | Leaf


def _lock_id(key: str) -> int:
    """A 63-bit advisory lock id derived from `key` (stable across processes and replicas)."""
    return int(sha256_text(f"custody-lineage:{key}")[:15], 16)


class Transactions:
    def __init__(self, engine: sa.Engine, ledger: Ledger | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.ledger = ledger

    @contextmanager
    def write(self, lock: str) -> Iterator[sa.Connection]:
        """One write transaction holding the lock named `lock` (a project, or TYPE_LOCK) until it ends."""
        with self.engine.connect() as connection:
            if self.dialect == "sqlite":
                # Take the write lock up front: a deferred transaction that reads first and writes later can fail
                # with SQLITE_BUSY instead of waiting for the other writer.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(lock)})
            try:
                yield connection
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

    def record(self, connection: sa.Connection, *records: Records) -> dict[str, LedgerPosition]:
        """Appends the leaves of the records this transaction inserted, in the order given, with one append as its
        last write; returns record name -> position (nothing without a ledger, or when nothing was inserted)."""
        if self.ledger is None:
            return {}
        leaves: list[Leaf] = []
        for item in records:
            if isinstance(item, Leaf):
                leaves.append(item)
            elif item[1]:
                leaves.extend(item[0].leaves(connection, item[1]))
        return self.ledger.place(connection, leaves)

    def positions(self, connection: sa.Connection, record_names: Sequence[str]) -> dict[str, LedgerPosition]:
        """Where each named record's leaf is (nothing without a ledger)."""
        return leaf_positions(self.ledger, connection, record_names)

    def read(self) -> sa.Connection:
        return self.engine.connect()

    def retrying(self, work: Callable[[], T]) -> T:
        """Re-runs a write transaction that lost a uniqueness race (or SQLite's busy timeout)."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return work()
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and "locked" not in str(exc).lower():
                    raise
                if attempt == CREATE_ATTEMPTS - 1:
                    raise Aborted(
                        "VERSION_CONFLICT",
                        "the version number could not be assigned after repeated conflicts; retry the request",
                        retry_after_s=0.1,
                    ) from exc
                time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
        raise AssertionError("unreachable")
