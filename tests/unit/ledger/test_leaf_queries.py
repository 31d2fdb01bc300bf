"""Deriving leaves inside a mint's transaction costs the same whatever the table's size: the records are found by
index, and their rows hashed by the fast canonical JSON encoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
import sqlalchemy as sa

from services.common import hashing
from services.common.db import create_engine
from services.common.ledger.leaves import TableRecords

METADATA = sa.MetaData()
HISTORY = sa.Table(
    "history",
    METADATA,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("changed_at_us", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text),
)
RECORDS = TableRecords(
    "explanation", HISTORY, lambda row: f"runs/{row['run_id']}/versions/{row['version']}", "changed_at_us"
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/records.db")
    METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            HISTORY.insert(),
            [{"run_id": f"run_{i}", "version": v, "changed_at_us": i, "note": None} for i in range(50) for v in (1, 2)],
        )
    yield engine
    engine.dispose()


def test_leaves_of_records_with_a_composite_key_are_read_by_index_not_by_scanning_the_table(
    engine: sa.Engine,
) -> None:
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    with engine.connect() as connection:
        sa.event.listen(connection, "before_cursor_execute", capture)
        leaves = list(RECORDS.leaves(connection, [("run_7", 2), ("run_3", 1)]))
        sa.event.remove(connection, "before_cursor_execute", capture)
        assert [leaf.name for leaf in leaves] == ["runs/run_3/versions/1", "runs/run_7/versions/2"]
        ((statement, parameters),) = statements
        plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]  # type: ignore[arg-type]
    assert not [step for step in plan if step.startswith("SCAN history")], plan


def test_rows_read_from_the_database_are_hashed_without_the_reference_encoder(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.connect() as connection:
        expected = [leaf.digests["row_sha256"] for leaf in RECORDS.leaves(connection)]

        def refuse(value: object) -> bytes:
            raise AssertionError(f"the reference encoder was used for {value!r}")

        monkeypatch.setattr(rfc8785, "dumps", refuse)
        assert hashing.rfc8785 is rfc8785
        assert [leaf.digests["row_sha256"] for leaf in RECORDS.leaves(connection)] == expected
