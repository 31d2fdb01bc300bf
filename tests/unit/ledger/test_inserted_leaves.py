"""Leaves derived from rows as a store inserts them (TableRecords.inserted) are the leaves the audit later derives
from the database, and rows that could come back different are refused rather than recorded."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from services.common.db import create_engine, insert_rows
from services.common.ledger.leaves import TableRecords

TABLE = sa.Table(
    "records",
    sa.MetaData(),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(40), nullable=False),
    sa.Column("body", sa.Text),
    sa.Column("note", sa.String(40)),
)
RECORDS = TableRecords("record", TABLE, lambda row: f"records/{row['id']}", "created_at_us", "created_by")
ROWS = [
    {"id": "r1", "created_at_us": 2, "created_by": "alice", "body": '{"é": "\\u2014"}', "note": None},
    {"id": "r0", "created_at_us": 1, "created_by": "bob", "body": "", "note": "x" * 40},
]


class Colour(enum.StrEnum):
    RED = "red"


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    TABLE.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_leaves_of_inserted_rows_are_the_leaves_the_database_gives_back(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, TABLE, ROWS)
        read_back = {leaf.name: leaf.canonical() for leaf in RECORDS.leaves(connection, [("r1",), ("r0",)])}
    assert {leaf.name: leaf.canonical() for leaf in RECORDS.inserted(ROWS)} == read_back


@pytest.mark.parametrize(
    "change",
    [
        {"note": Decimal("1")},
        {"created_at_us": True},
        {"created_at_us": 1.0},
        {"body": b"bytes"},
        {"body": Colour.RED},
    ],
    ids=["decimal", "bool", "float", "bytes", "str-subclass"],
)
def test_a_value_the_database_may_hand_back_otherwise_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="not str, int or None"):
        RECORDS.inserted([{**ROWS[0], **change}])


def test_a_row_without_every_column_is_refused() -> None:
    row = {key: value for key, value in ROWS[0].items() if key != "note"}
    with pytest.raises(TypeError, match="note"):
        RECORDS.inserted([row])


def test_a_row_with_a_column_the_table_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match="extra"):
        RECORDS.inserted([{**ROWS[0], "extra": 1}])


def test_records_spanning_several_tables_are_not_derived_from_one_row() -> None:
    spanning = TableRecords("record", TABLE, lambda row: row["id"], "created_at_us", parts=lambda _c, _r: {})
    with pytest.raises(TypeError, match="read them back"):
        spanning.inserted(ROWS)
