"""Catching the tree up: a leaf committed while the tree reads is the next leaf, never a gap; a deleted one is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common.db import create_engine
from services.common.ledger import merkle
from services.common.ledger.leaves import Leaf
from services.common.ledger.store import LedgerRows, ledger_table
from services.common.ledger.tree import LedgerGap, LedgerTree

TABLE = ledger_table(sa.MetaData())


def leaf(index: int) -> Leaf:
    return Leaf(kind="run", name=f"runs/run_{index:032x}", time_us=index, digests={})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/ledger.db")
    TABLE.metadata.create_all(engine)
    yield engine
    engine.dispose()


def append(engine: sa.Engine, first: int, count: int) -> None:
    with engine.begin() as connection:
        LedgerRows(TABLE).append(connection, [leaf(i) for i in range(first, first + count)])


class CommitsWhileRead(LedgerRows):
    """Rows where another writer commits a leaf right after each of the tree's reads of leaf hashes."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(TABLE)
        self.engine = engine
        self.committed = 0

    def hashes(self, connection: sa.Connection, start: int, end: int) -> list[bytes]:
        found = super().hashes(connection, start, end)
        with self.engine.begin() as other:
            LedgerRows(TABLE).append(other, [leaf(self.size(other))])
        self.committed += 1
        return found


def test_a_leaf_committed_while_the_tree_catches_up_is_caught_up_next_time_not_taken_for_a_gap(
    engine: sa.Engine,
) -> None:
    append(engine, 0, 300)
    rows = CommitsWhileRead(engine)
    tree = LedgerTree(engine, rows)
    assert tree.catch_up() == 300
    assert rows.committed == 1
    assert tree.catch_up() == 301
    assert tree.root(301) == merkle.root_of(merkle.leaf_hash(leaf(i).canonical()) for i in range(301))


def test_a_leaf_deleted_below_the_last_one_is_a_gap(engine: sa.Engine) -> None:
    append(engine, 0, 300)
    with engine.begin() as connection:
        connection.execute(TABLE.delete().where(TABLE.c.leaf_index == 299))
        connection.execute(TABLE.delete().where(TABLE.c.leaf_index == 17))
    with pytest.raises(LedgerGap, match="leaf 17 is missing"):
        LedgerTree(engine, LedgerRows(TABLE)).catch_up()


def test_a_gap_in_leaves_appended_since_the_last_catch_up_is_found(engine: sa.Engine) -> None:
    append(engine, 0, 10)
    tree = LedgerTree(engine, LedgerRows(TABLE))
    assert tree.catch_up() == 10
    append(engine, 10, 5000)  # more than one batch of reads
    with engine.begin() as connection:
        connection.execute(TABLE.delete().where(TABLE.c.leaf_index == 4321))
    with pytest.raises(LedgerGap, match="leaf 4321 is missing"):
        tree.catch_up()
