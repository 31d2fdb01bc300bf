"""The shared budget ledger on both databases: concurrent reservations and admissions from separate engines (as
replicas have) never exceed the limit; a new day is seeded from the audited calls; a hold is released once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import Ask, DayLimits, RateAsk, Reservation, Settlement
from services.ai_gateway.store import CallStore
from services.common import migrations
from services.common.clock import to_us
from services.common.db import create_engine
from services.common.ids import new_id
from tests.ai_gateway.records import T0, later, record

DAY, DAY_START_US = "2025-06-01", to_us(T0.replace(hour=0))
RUNS = "service:runs"
TOKENS_100 = DayLimits(tokens=100, usd=None)


@pytest.fixture
def engines(database_url: str) -> Iterator[list[sa.Engine]]:
    """Three engines on one database, each with its own pool, as three replicas would have."""
    found = [create_engine(database_url) for _ in range(3)]
    migrations.upgrade(found[0], "ai_gateway")
    yield found
    for engine in found:
        engine.dispose()


def hold(tokens: int, usd: str = "0", caller: str = RUNS) -> Reservation:
    return Reservation(new_id("call"), caller, DAY, DAY_START_US, tokens, Decimal(usd), to_us(later(60)))


def test_concurrent_reservations_from_several_replicas_never_exceed_the_limit(engines: list[sa.Engine]) -> None:
    ledgers = [BudgetLedger(engine) for engine in engines]
    with ThreadPoolExecutor(12) as pool:
        granted = list(pool.map(lambda i: ledgers[i % 3].reserve(hold(7), TOKENS_100)[0], range(60)))
    assert sum(granted) == 100 // 7
    assert ledgers[0].day_totals(DAY)[RUNS].reserved_tokens == 7 * (100 // 7)


def test_concurrent_admissions_from_several_replicas_admit_exactly_the_limit(engines: list[sa.Engine]) -> None:
    ledgers = [BudgetLedger(engine) for engine in engines]
    now_us = to_us(T0)

    def admit(i: int) -> bool:
        return ledgers[i % 3].admit_request(RUNS, new_id("call"), now_us + i, 60_000_000, 10) is None

    with ThreadPoolExecutor(12) as pool:
        admitted = list(pool.map(admit, range(40)))
    assert sum(admitted) == 10


def test_a_full_window_reports_its_oldest_request_and_frees_as_it_ages_out(engines: list[sa.Engine]) -> None:
    ledger, now_us = BudgetLedger(engines[0]), to_us(T0)
    assert ledger.admit_request(RUNS, "a", now_us, 60_000_000, 2) is None
    assert ledger.admit_request(RUNS, "b", now_us + 5, 60_000_000, 2) is None
    assert ledger.admit_request(RUNS, "c", now_us + 10, 60_000_000, 2) == now_us
    assert ledger.admit_request(RUNS, "d", now_us + 60_000_000, 60_000_000, 2) is None


def test_a_usd_limit_refuses_what_would_exceed_it_and_reports_the_totals(engines: list[sa.Engine]) -> None:
    ledger, limits = BudgetLedger(engines[0]), DayLimits(tokens=None, usd=Decimal("1.00"))
    assert ledger.reserve(hold(1, "0.60"), limits)[0]
    granted, totals = ledger.reserve(hold(1, "0.50"), limits)
    assert not granted and totals.reserved_usd == Decimal("0.60")


def test_a_new_day_is_seeded_from_the_callers_audited_calls_since_midnight(engines: list[sa.Engine]) -> None:
    store = CallStore(engines[0])
    store.insert(record(at=later(0), tokens=(10, 0, 5), cost=0.25))
    store.insert(record(at=later(1), tokens=(1, 0, 1), cost=None))  # unknown cost adds no dollars
    store.insert(record(at=T0.replace(hour=0) - timedelta(seconds=1), tokens=(100, 0, 0)))  # yesterday
    store.insert(record(at=later(2), caller="service:art_studio", tokens=(50, 0, 0), cost=2.0))
    ledger = BudgetLedger(engines[0])
    assert ledger.reserve(hold(1), TOKENS_100)[0]
    totals = ledger.day_totals(DAY)[RUNS]
    assert (totals.spent_tokens, totals.spent_usd, totals.reserved_tokens) == (17, Decimal("0.25"), 1)


def test_a_hold_is_released_once_whether_settled_or_reclaimed_first(engines: list[sa.Engine]) -> None:
    ledger, taken = BudgetLedger(engines[0]), hold(40)
    assert ledger.reserve(taken, TOKENS_100)[0]
    assert ledger.reclaim_expired(taken.expires_at_us) == 1
    assert not ledger.settle(taken, 5, Decimal(0))
    totals = ledger.day_totals(DAY)[RUNS]
    assert (totals.spent_tokens, totals.reserved_tokens) == (40, 0)


def test_a_batch_is_granted_in_order_while_the_budget_lasts(engines: list[sa.Engine]) -> None:
    ledger = BudgetLedger(engines[0])
    answers = ledger.decide([Ask(None, hold(7), TOKENS_100) for _ in range(20)])
    assert [a.granted for a in answers] == [True] * (100 // 7) + [False] * (20 - 100 // 7)
    assert answers[-1].totals.reserved_tokens == 7 * (100 // 7)
    assert ledger.day_totals(DAY)[RUNS].reserved_tokens == 7 * (100 // 7)


def test_concurrent_batches_from_several_replicas_never_exceed_the_limit(engines: list[sa.Engine]) -> None:
    ledgers = [BudgetLedger(engine) for engine in engines]
    rate = DayLimits(tokens=1000, usd=None)

    def batch(i: int) -> int:
        asks = [Ask(RateAsk(RUNS, new_id("call"), to_us(T0) + i, 60_000_000, 10**6), hold(70), rate) for _ in range(8)]
        return sum(a.granted for a in ledgers[i % 3].decide(asks))

    with ThreadPoolExecutor(6) as pool:
        granted = sum(pool.map(batch, range(12)))
    assert granted == 1000 // 70
    assert ledgers[0].day_totals(DAY)[RUNS].reserved_tokens == 70 * (1000 // 70)


def test_a_request_refused_by_the_budget_is_not_counted_and_one_rate_limited_reserves_nothing(
    engines: list[sa.Engine],
) -> None:
    ledger, now_us = BudgetLedger(engines[0]), to_us(T0)

    def ask(tokens: int) -> Ask:
        return Ask(RateAsk(RUNS, new_id("call"), now_us, 60_000_000, 1), hold(tokens), TOKENS_100)

    answers = ledger.decide([ask(101), ask(60), ask(30)])
    assert [(a.granted, a.oldest_us) for a in answers] == [(False, None), (True, None), (False, now_us)]
    assert ledger.day_totals(DAY)[RUNS].reserved_tokens == 60


def test_a_batch_of_settlements_commits_each_once(engines: list[sa.Engine]) -> None:
    ledger, held = BudgetLedger(engines[0]), [hold(30), hold(30, caller="service:art_studio"), hold(20)]
    assert all(ledger.reserve(h, TOKENS_100)[0] for h in held)
    assert ledger.settle_many([Settlement(h, 5, Decimal(0)) for h in (*held, held[0])]) == [True, True, True, False]
    found = {caller: (t.spent_tokens, t.reserved_tokens) for caller, t in ledger.day_totals(DAY).items()}
    assert found == {RUNS: (10, 0), "service:art_studio": (5, 0)}
