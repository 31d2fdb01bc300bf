"""The store's guarantees on SQLite and PostgreSQL: numbering retries, immutable tables, compare-and-set state; and
the domain acting as the caller the call context holds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.common.clock import utc_now
from services.common.errors import Aborted
from services.common.identity import Principal, PrincipalKind
from services.common.ledger.ledger import Ledger
from services.lineage import tables
from services.lineage.domain.model import Metadata, Source, TypeDefinition
from services.lineage.domain.registration import check_registration
from services.lineage.domain.service import Lineage
from services.lineage.store import LineageStore
from services.lineage.store.versions import VersionStore
from tests.lineage.conftest import LedgerFiles, calling_as

CALLER = Principal("human:t", PrincipalKind.HUMAN, frozenset({"operator"}))
META = Metadata("i", "r", 1.0, Source.HUMAN)


@pytest.fixture
def lineage(engine: sa.Engine, ledger: tuple[Ledger, LedgerFiles]) -> Lineage:
    store = LineageStore(engine, ledger[0])
    store.ensure_types([TypeDefinition("node", "t", "1", {"type": "object"})], CALLER, utc_now(), check_registration)
    return Lineage(store, {})


def new(lineage: Lineage, entity: str, upstream: list[str] | None = None, key: str = "") -> str:
    parent = f"projects/p/artifacts/node/{entity}"
    return str(calling_as(CALLER, "req-t", lineage.create_version, parent, {}, META, upstream or [], key).version.name)


def test_a_version_records_the_caller_and_request_id_bound_to_the_call(lineage: Lineage) -> None:
    other = Principal("human:other", PrincipalKind.HUMAN, frozenset({"operator"}))
    created = calling_as(other, "req-other", lineage.create_version, "projects/p/artifacts/node/e", {}, META, [], "")
    assert (created.version.created_by.id, created.version.request_id) == ("human:other", "req-other")


def test_the_domain_refuses_to_act_with_no_caller_bound_and_records_nothing(lineage: Lineage) -> None:
    with pytest.raises(RuntimeError, match="no authenticated principal"):
        lineage.create_version("projects/p/artifacts/node/e", {}, META, [], "")
    assert lineage.list_versions("projects/p", 10, "") == ([], "")


def test_a_number_taken_concurrently_is_retried_with_the_next_one(
    lineage: Lineage, monkeypatch: pytest.MonkeyPatch
) -> None:
    new(lineage, "e")
    real = VersionStore._next_number
    calls = []

    def stale_first(self: VersionStore, connection: sa.Connection, entity: object) -> int:
        calls.append(1)
        return 1 if len(calls) == 1 else real(self, connection, entity)  # type: ignore[arg-type]

    monkeypatch.setattr(VersionStore, "_next_number", stale_first)
    assert new(lineage, "e").endswith("/versions/2")
    assert len(calls) == 2


def test_repeated_conflicts_end_in_aborted(lineage: Lineage, monkeypatch: pytest.MonkeyPatch) -> None:
    new(lineage, "e")
    monkeypatch.setattr(VersionStore, "_next_number", lambda self, connection, entity: 1)
    monkeypatch.setattr("services.lineage.store.transactions.time.sleep", lambda s: None)
    with pytest.raises(Aborted) as raised:
        new(lineage, "e")
    assert raised.value.reason == "VERSION_CONFLICT"


# Witnessed checkpoints have their own test (tests/lineage/test_witness.py): these versions make none.
WITNESS_TABLES = ("lineage_witness_history", "lineage_witness_refusals")


@pytest.mark.parametrize("table", [t for t in tables.IMMUTABLE_TABLES if t not in WITNESS_TABLES])
def test_every_immutable_table_refuses_delete(lineage: Lineage, engine: sa.Engine, table: str) -> None:
    a = new(lineage, "a")
    new(lineage, "b", [a])
    new(lineage, "a")
    new(lineage, "c", key="key-1")
    with engine.connect() as connection:
        assert connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one() > 0
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.exec_driver_sql(f"DELETE FROM {table}")


def test_health_status_and_witnessed_rows_are_the_only_mutable_ones(engine: sa.Engine) -> None:
    mutable = set(tables.metadata.tables) - set(tables.IMMUTABLE_TABLES)
    assert mutable == {"lineage_status", "lineage_health", "lineage_witnessed"}
