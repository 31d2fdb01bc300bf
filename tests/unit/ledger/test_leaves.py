"""row_sha256 over rows as SQLAlchemy returns them: the same digest as the RFC 8785 reference, on the fast path."""

from __future__ import annotations

from decimal import Decimal

import pytest
import rfc8785
import sqlalchemy as sa

from services.common.hashing import sha256_bytes
from services.common.ledger.leaves import column_value, row_sha256

TABLE = sa.Table(
    "records",
    sa.MetaData(),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger),
    sa.Column("body", sa.Text),
    sa.Column("cost", sa.Numeric(20, 10)),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("note", sa.String(40)),
)
ROW = {"id": "r1", "created_at_us": 1, "body": '{"é": "\\u2014"}' * 50, "cost": Decimal("0.25"), "blob": b"\x00"}


@pytest.fixture
def stored() -> dict[str, object]:
    """A row as TableRecords digests it: dict() of what SQLAlchemy returns."""
    engine = sa.create_engine("sqlite://")
    TABLE.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(TABLE.insert(), {**ROW, "note": None})
        return dict(connection.execute(sa.select(TABLE)).mappings().one())


def test_a_stored_rows_digest_is_the_reference_digest_of_its_columns(stored: dict[str, object]) -> None:
    reference = [{str(key): column_value(value) for key, value in stored.items()}]
    assert row_sha256([stored]) == sha256_bytes(rfc8785.dumps(reference))


def test_a_stored_row_takes_the_fast_path(stored: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its column names are a str subclass (sqlalchemy's quoted_name), which the fast path refuses."""
    assert any(type(key) is not str for key in stored)

    def refused(value: object) -> bytes:
        raise AssertionError("took the reference path")

    monkeypatch.setattr(rfc8785, "dumps", refused)
    row_sha256([stored])
