"""Lineage's ledger records at the store, on SQLite and PostgreSQL: leaves are appended with their records or not
at all, and whatever sequence of writes the domain makes, the leaves the store wrote are the leaves the audit
derives from the rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import migrations
from services.common.clock import utc_now
from services.common.db import create_engine
from services.common.errors import CustodyError
from services.common.hashing import sha256_canonical
from services.common.identity import REVIEWER_ROLE, Principal, PrincipalKind
from services.common.ledger.leaves import column_value
from services.common.ledger.ledger import Ledger
from services.lineage import tables
from services.lineage.domain.model import Health, Metadata, Source, TypeDefinition
from services.lineage.domain.registration import check_registration
from services.lineage.domain.service import Lineage
from services.lineage.ledger_records import HISTORY_COLUMNS, SHARED, propagation_sha256
from services.lineage.store import LineageStore
from services.lineage.store.transactions import Transactions
from tests.lineage.conftest import LedgerFiles, audit, calling_as, make_ledger

OPERATOR = Principal("human:op", PrincipalKind.HUMAN, frozenset({"operator"}))
REVIEWER = Principal("human:rev", PrincipalKind.HUMAN, frozenset({REVIEWER_ROLE}))
META = Metadata("i", "r", 1.0, Source.HUMAN)
_projects = itertools.count()


def leaf_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(tables.ledger)).scalar_one())


def with_types(store: LineageStore) -> Lineage:
    store.ensure_types([TypeDefinition("node", "t", "1", {"type": "object"})], OPERATOR, utc_now(), check_registration)
    return Lineage(store, {})


def test_a_write_rolled_back_after_its_leaves_were_appended_leaves_no_leaf(
    engine: sa.Engine, ledger: tuple[Ledger, LedgerFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    lineage = with_types(LineageStore(engine, ledger[0]))
    before = leaf_count(engine)
    real = Transactions.record

    def record_then_fail(self: Transactions, connection: sa.Connection, *records: Any) -> Any:
        real(self, connection, *records)
        raise RuntimeError("the transaction fails after the append")

    monkeypatch.setattr(Transactions, "record", record_then_fail)
    with pytest.raises(RuntimeError, match="after the append"):
        calling_as(OPERATOR, "r", lineage.create_version, "projects/p/artifacts/node/e", {}, META, [], "")
    assert leaf_count(engine) == before
    monkeypatch.undo()
    calling_as(OPERATOR, "r", lineage.create_version, "projects/p/artifacts/node/e", {}, META, [], "")
    assert audit(engine, ledger[1]).ok  # no gap: the next write took the index the failed one had


def plain_document(shared: dict[str, Any], entries: list[Any]) -> dict[str, Any]:
    """The document propagation_sha256 hashes, built the obvious way."""
    rows = [
        {k: column_value(v) for k, v in e.items()} if isinstance(e, dict) else [column_value(v) for v in e]
        for e in entries
    ]
    return {"rows": rows, "shared": {k: column_value(v) for k, v in shared.items()}}


# JSON's exact range (beyond it canonical_json refuses numbers, and so does the digest).
numbers = st.integers(-(2**53) + 1, 2**53 - 1)
values = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.floats(allow_nan=False, allow_infinity=False, min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.text(),
    st.binary(max_size=8),
)
entries = st.lists(
    st.one_of(
        st.tuples(numbers, numbers, st.text()),
        st.tuples(values, values, values),
        st.dictionaries(st.sampled_from(HISTORY_COLUMNS), values, min_size=1),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SHARED), values), entries)
def test_the_propagation_digest_is_the_sha256_of_the_canonical_json_of_its_document(
    shared: dict[str, Any], rows: list[Any]
) -> None:
    assert propagation_sha256(shared, rows) == sha256_canonical(plain_document(shared, rows))


def test_the_propagation_digest_is_the_same_in_chunks() -> None:
    rows = [(i, 2, "valid" if i % 3 else "confirmed_valid") for i in range(10_000)]
    shared = {"health": "stale", "rationale": "r\u00e9vis\u00e9"}
    assert propagation_sha256(shared, rows) == sha256_canonical(plain_document(shared, rows))


# ---- whatever the writes, the audit derives the leaves the store wrote ----------------------------------------------


@pytest.fixture
def recorded(database_url: str, tmp_path: Path) -> Iterator[tuple[Lineage, sa.Engine, LedgerFiles]]:
    engine = create_engine(database_url)
    migrations.upgrade(engine, "lineage")
    ledger, files = make_ledger(engine, tmp_path / "ledger")
    yield with_types(LineageStore(engine, ledger)), engine, files
    engine.dispose()


# An operation: (kind, entity, picks into the versions so far, request id or "").
operations = st.lists(
    st.tuples(
        st.sampled_from(["create", "create", "create", "approve", "flag", "reject", "needs_revision", "confirm"]),
        st.integers(0, 4),
        st.lists(st.integers(0, 1000), max_size=3),
        st.sampled_from(["", "", "k1", "k2"]),
    ),
    min_size=1,
    max_size=16,
)


def run(lineage: Lineage, project: str, plan: list[tuple[str, int, list[int], str]]) -> None:
    versions: list[str] = []
    for kind, entity, picks, key in plan:
        try:
            if kind == "create" or not versions:
                parent = f"projects/{project}/artifacts/node/e{entity}"
                others = [v for v in versions if not v.startswith(parent + "/")]
                upstream = list(dict.fromkeys(others[p % len(others)] for p in picks)) if others else []
                created = calling_as(OPERATOR, "r", lineage.create_version, parent, {}, META, upstream, key)
                versions.append(str(created.version.name))
                continue
            name = versions[picks[0] % len(versions)] if picks else versions[-1]
            if kind == "approve":
                calling_as(REVIEWER, "r", lineage.approve, name, "ok", key)
            elif kind == "flag":
                calling_as(OPERATOR, "r", lineage.flag, name, "odd", key)
            elif kind == "reject":
                calling_as(REVIEWER, "r", lineage.reject, name, "no", key)
            else:
                health = Health.NEEDS_REVISION if kind == "needs_revision" else Health.CONFIRMED_VALID
                calling_as(REVIEWER, "r", lineage.assess_health, name, health, "assessed", 0, key)
        except CustodyError:
            pass  # refused (a transition, a gate, a reused request id): recorded nothing, which the audit checks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_after_any_writes_the_audit_derives_exactly_the_leaves_the_store_wrote(
    recorded: tuple[Lineage, sa.Engine, LedgerFiles], plan: list[tuple[str, int, list[int], str]]
) -> None:
    lineage, engine, files = recorded
    run(lineage, f"p{next(_projects)}", plan)
    report = audit(engine, files)
    assert report.findings == []
    assert report.leaves == report.records == leaf_count(engine)
