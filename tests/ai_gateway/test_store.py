"""The audit store on SQLite and PostgreSQL: create-only rows, replay claims, keyset listing, usage sums."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from services.ai_gateway.domain.model import AuditedCall, ListFilters, Outcome
from services.ai_gateway.store import CallStore, ReplayClaim
from services.common import migrations
from services.common.clock import to_us
from services.common.db import create_engine
from tests.ai_gateway.records import T0, later, record

NOW = to_us(T0)
HOUR_US = 3600 * 1_000_000


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    migrations.upgrade(engine, "ai_gateway")
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> CallStore:
    return CallStore(engine)


def claim(content: str = "answer") -> ReplayClaim:
    return ReplayClaim(content, NOW, NOW + HOUR_US)


def test_a_stored_record_reads_back_equal(store: CallStore) -> None:
    stored = record(error_reason="", finish_reason="stop")
    store.insert(stored)
    assert store.get(stored.call_id) == AuditedCall(stored)  # no ledger here: no leaf


def test_an_unknown_call_reads_as_none(store: CallStore) -> None:
    assert store.get("call_" + "0" * 32) is None


@pytest.mark.parametrize("statement", ["UPDATE ai_calls SET outcome = 'FAILED'", "DELETE FROM ai_calls"])
def test_the_database_refuses_to_change_audit_rows(store: CallStore, engine: sa.Engine, statement: str) -> None:
    store.insert(record())
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as connection:
        connection.exec_driver_sql(statement)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT outcome FROM ai_calls").scalars().all() == ["SUCCEEDED"]


def test_a_claimed_request_id_replays_the_stored_content(store: CallStore) -> None:
    first = record(key="k1")
    assert store.insert(first, claim("the answer")).holder is None
    entry = store.find_replay("service:runs", "k1", now_us=NOW)
    assert entry is not None
    assert (entry.record, entry.content, entry.request_sha256) == (first, "the answer", first.request_sha256)


def test_a_second_claim_of_the_same_key_returns_the_holder_and_keeps_both_rows(store: CallStore) -> None:
    first, second = record(key="k1"), record(key="k1", at=later(1))
    store.insert(first, claim("first"))
    holder = store.insert(second, claim("second")).holder
    assert holder is not None and holder.record.call_id == first.call_id and holder.content == "first"
    assert store.get(second.call_id) == AuditedCall(second)  # the second call is still audited


def test_request_id_claims_are_scoped_to_the_caller(store: CallStore) -> None:
    store.insert(record(key="k1"), claim("runs"))
    assert store.insert(record(key="k1", caller="service:art_studio"), claim("art")).holder is None
    entry = store.find_replay("service:art_studio", "k1", now_us=NOW)
    assert entry is not None and entry.content == "art"


def test_an_expired_claim_is_not_replayed_and_can_be_claimed_again(store: CallStore) -> None:
    store.insert(record(key="k1"), ReplayClaim("old", NOW, NOW + 10))
    assert store.find_replay("service:runs", "k1", now_us=NOW + 10) is None
    newer = record(key="k1", at=later(5))
    assert store.insert(newer, ReplayClaim("new", NOW + 20, NOW + HOUR_US)).holder is None
    entry = store.find_replay("service:runs", "k1", now_us=NOW + 20)
    assert entry is not None and entry.content == "new"


def test_purge_forgets_expired_replay_content_but_keeps_audit_rows(store: CallStore) -> None:
    old, fresh = record(key="old"), record(key="fresh")
    store.insert(old, ReplayClaim("x", NOW, NOW + 10))
    store.insert(fresh, claim())
    assert store.purge_replays(NOW + 11) == 1
    assert store.find_replay("service:runs", "fresh", now_us=NOW + 11) is not None
    assert store.get(old.call_id) == AuditedCall(old)


def test_listing_is_newest_first_and_pages_without_gaps_or_repeats(store: CallStore) -> None:
    records = [record(at=later(i)) for i in range(5)] + [record(at=later(2))]  # a tie on created_at
    for item in records:
        store.insert(item)
    seen, after = [], None
    while True:
        page = [call.record for call in store.list(ListFilters(), 2, after)]
        if not page:
            break
        seen.extend(page)
        after = (to_us(page[-1].envelope.created_at), page[-1].call_id)
    assert sorted(r.call_id for r in seen) == sorted(r.call_id for r in records)
    keys = [(to_us(r.envelope.created_at), r.call_id) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_listing_filters_combine(store: CallStore) -> None:
    wanted = record(operation="explain_run_decision", caller="service:runs", at=later(10), request_id="req-x")
    for other in (
        record(operation="general_text", at=later(10)),
        record(operation="explain_run_decision", caller="service:art_studio", at=later(10)),
        record(operation="explain_run_decision", at=later(100)),
        record(operation="explain_run_decision", at=later(10), outcome=Outcome.FAILED),
    ):
        store.insert(other)
    store.insert(wanted)
    filters = ListFilters(
        operation="explain_run_decision",
        caller="service:runs",
        start_us=to_us(later(5)),
        end_us=to_us(later(50)),
        outcome=Outcome.SUCCEEDED,
    )
    assert [c.record.call_id for c in store.list(filters, 10, None)] == [wanted.call_id]


def test_the_request_id_filter_matches_the_correlation_id_or_the_idempotency_key(store: CallStore) -> None:
    by_correlation, by_key = record(request_id="req-a"), record(request_id="req-b", key="req-a")
    for item in (by_correlation, by_key, record(request_id="req-c")):
        store.insert(item)
    found = {c.record.call_id for c in store.list(ListFilters(request_id="req-a"), 10, None)}
    assert found == {by_correlation.call_id, by_key.call_id}


def test_one_batch_stores_every_record_and_gives_a_contested_key_to_the_first(store: CallStore) -> None:
    first, second, other = record(key="k9"), record(key="k9", at=later(1)), record(key="k10")
    stored = store.insert_many([(first, claim("one")), (second, claim("two")), (other, claim("three"))])
    holders = [each.holder for each in stored]
    assert holders[0] is None and holders[2] is None
    assert holders[1] is not None and holders[1].record.call_id == first.call_id and holders[1].content == "one"
    assert all(store.get(r.call_id) == AuditedCall(r) for r in (first, second, other))
