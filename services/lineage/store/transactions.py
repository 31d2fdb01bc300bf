"""How every lineage write runs: one transaction, serialized per project, retried when it lost a uniqueness race.

Writes are serialized per project (a PostgreSQL advisory transaction lock; SQLite's write lock via BEGIN
IMMEDIATE), so a check and the write it guards cannot interleave with another write: an approval cannot slip past
a concurrent revision of its upstream, and staleness marking cannot miss a version being created. The lock is in
the database, so it holds across replicas too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.errors import Aborted
from services.common.hashing import sha256_text

CREATE_ATTEMPTS = 8
TYPE_LOCK = "lineage-types"

T = TypeVar("T")


def _lock_id(key: str) -> int:
    """A 63-bit advisory lock id derived from `key` (stable across processes and replicas)."""
    return int(sha256_text(f"custody-lineage:{key}")[:15], 16)


class Transactions:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

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
