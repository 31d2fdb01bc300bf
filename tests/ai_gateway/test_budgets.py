"""Per-caller limits: requests per minute, tokens and USD per day, reserved up front against the shared ledger
(a real SQLite database), seeded from the audit store, reclaimed when never settled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import HOLD_GRACE_S, NO_RESERVATION, Answer, Ask, Budgets, Reservation, Settlement
from services.ai_gateway.config import Budget
from services.ai_gateway.store import CallStore
from services.common import migrations
from services.common.db import create_engine
from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from services.common.ids import new_id
from services.common.outage_errors import outage_error
from tests.ai_gateway.records import T0, record

NOON = T0.timestamp()  # 2025-06-01T12:00:00Z
RUNS = "service:runs"


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/gateway.db")
    migrations.upgrade(engine, "ai_gateway")
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budgets(engine: sa.Engine, limits: dict[str, Budget], clock: Clock) -> Budgets:
    return Budgets(limits, BudgetLedger(engine), clock=clock)


def reserve(limits: Budgets, tokens: int, usd: Decimal | None = None, lasts_s: float = 10.0) -> Reservation:
    return asyncio.run(limits.reserve(RUNS, tokens, usd, call_id=new_id("call"), lasts_s=lasts_s))


def admit(limits: Budgets, caller: str = RUNS) -> None:
    asyncio.run(limits.admit_request(caller, new_id("call")))


def test_requests_beyond_the_per_minute_limit_are_rate_limited_until_the_window_frees(
    engine: sa.Engine, clock: Clock
) -> None:
    limits = budgets(engine, {RUNS: Budget(requests_per_minute=2)}, clock)
    admit(limits)
    clock.now += 20
    admit(limits)
    with pytest.raises(ResourceExhausted) as raised:
        admit(limits)
    assert raised.value.reason == "RATE_LIMITED"
    assert raised.value.retry_after_s == pytest.approx(40)
    clock.now += 40.001
    admit(limits)


def test_replicas_on_one_database_share_the_rate_window(engine: sa.Engine, clock: Clock) -> None:
    one, other = (budgets(engine, {RUNS: Budget(requests_per_minute=2)}, clock) for _ in range(2))
    admit(one)
    admit(other)
    with pytest.raises(ResourceExhausted):
        admit(one)


def test_the_default_entry_applies_to_callers_without_their_own(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {"*": Budget(requests_per_minute=1), RUNS: Budget(requests_per_minute=5)}, clock)
    admit(limits, "service:art_studio")
    with pytest.raises(ResourceExhausted):
        admit(limits, "service:art_studio")
    for _ in range(5):
        admit(limits)


def test_callers_without_limits_are_not_counted(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {}, clock)
    for _ in range(20):
        admit(limits)
    assert reserve(limits, 10**9) is NO_RESERVATION
    assert BudgetLedger(engine).day_totals("2025-06-01") == {}


def test_a_call_whose_worst_case_does_not_fit_the_audited_spend_is_refused_until_midnight(
    engine: sa.Engine, clock: Clock
) -> None:
    CallStore(engine).insert(record(tokens=(900, 0, 0)))  # audited before the day's ledger row existed
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    with pytest.raises(ResourceExhausted) as raised:
        reserve(limits, 101)
    assert raised.value.reason == "BUDGET_EXCEEDED"
    assert raised.value.metadata["limit"] == "tokens_per_day"
    assert raised.value.retry_after_s == 12 * 3600
    assert reserve(limits, 100).tokens == 100


def test_concurrent_reservations_cannot_jointly_overshoot(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)

    async def many() -> list[object]:
        calls = (limits.reserve(RUNS, 300, None, call_id=new_id("call"), lasts_s=10) for _ in range(5))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(many())
    assert sum(isinstance(r, ResourceExhausted) for r in results) == 2


def test_settling_replaces_the_reservation_with_the_reported_usage(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    asyncio.run(limits.settle(reserve(limits, 900), 50, None))
    reserve(limits, 950)  # 50 used + 950 fits exactly


def test_an_unknown_usage_is_charged_at_the_reservation(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    asyncio.run(limits.settle(reserve(limits, 600), None, None))
    with pytest.raises(ResourceExhausted):
        reserve(limits, 401)


def test_the_usd_budget_counts_reserved_dollars(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(usd_per_day=1.0)}, clock)
    reserve(limits, 1, Decimal("0.75"))
    with pytest.raises(ResourceExhausted) as raised:
        reserve(limits, 1, Decimal("0.30"))
    assert raised.value.metadata["limit"] == "usd_per_day"


def test_a_usd_budget_refuses_a_model_without_a_price(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(usd_per_day=1.0)}, clock)
    with pytest.raises(FailedPrecondition) as raised:
        reserve(limits, 1, None)
    assert raised.value.reason == "PRICE_UNKNOWN"


def test_a_new_day_starts_from_nothing(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=100)}, clock)
    reserve(limits, 100)
    clock.now += 24 * 3600
    reserve(limits, 100)


def test_a_reservation_never_settled_holds_until_it_expires_then_is_charged_in_full(
    engine: sa.Engine, clock: Clock
) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    lost = reserve(limits, 600, lasts_s=10)  # its replica crashed: never settled
    assert asyncio.run(limits.reclaim()) == 0
    clock.now += 10 + HOLD_GRACE_S
    assert asyncio.run(limits.reclaim()) == 1
    assert BudgetLedger(engine).day_totals(lost.day)[RUNS].spent_tokens == 600  # no audit record: worst case
    with pytest.raises(ResourceExhausted):
        reserve(limits, 401)


def test_an_expired_reservation_whose_call_was_audited_is_charged_its_audited_usage(
    engine: sa.Engine, clock: Clock
) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    audited = record(tokens=(30, 0, 20))
    lost = asyncio.run(limits.reserve(RUNS, 900, None, call_id=audited.call_id, lasts_s=10))
    CallStore(engine).insert(audited)  # recorded, then its replica crashed before settling
    clock.now += 10 + HOLD_GRACE_S
    reserve(limits, 950)  # a refusal would reclaim first: 50 audited + 950 fits
    assert BudgetLedger(engine).day_totals(lost.day)[RUNS].spent_tokens == 50


def test_a_reclaimed_reservation_settling_late_changes_nothing(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=1000)}, clock)
    late = reserve(limits, 600, lasts_s=10)
    clock.now += 10 + HOLD_GRACE_S
    asyncio.run(limits.reclaim())
    asyncio.run(limits.settle(late, 10, None))
    asyncio.run(limits.flush())
    assert BudgetLedger(engine).day_totals(late.day)[RUNS].spent_tokens == 600


def test_a_refusal_seen_is_repeated_without_asking_the_database(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=100, requests_per_minute=1)}, clock)
    asyncio.run(limits.settle(reserve(limits, 100), None, None))
    admit(limits)
    for refused in (lambda: reserve(limits, 1), lambda: admit(limits)):
        with pytest.raises(ResourceExhausted):
            refused()
    with engine.begin() as connection:  # asking the database now would fail
        for table in ("ai_budget_holds", "ai_budget_days", "ai_rate_requests"):
            connection.exec_driver_sql(f"DROP TABLE {table}")
    for refused in (lambda: reserve(limits, 1), lambda: admit(limits)):
        with pytest.raises(ResourceExhausted):
            refused()


def test_a_database_failure_during_reservation_fails_closed_as_unavailable(clock: Clock) -> None:
    unreachable = create_engine("postgresql://custody@127.0.0.1:1/custody")
    limits = budgets(unreachable, {RUNS: Budget(tokens_per_day=100, requests_per_minute=5)}, clock)
    for call in (lambda: reserve(limits, 1), lambda: admit(limits)):
        with pytest.raises(sa.exc.OperationalError) as raised:
            call()
        assert isinstance(outage_error(raised.value), Unavailable)


def test_the_remaining_budget_gauges_read_the_totals_every_replica_shares(engine: sa.Engine, clock: Clock) -> None:
    limits = {RUNS: Budget(tokens_per_day=1000, usd_per_day=2.0)}
    one, other = budgets(engine, limits, clock), budgets(engine, limits, clock)
    asyncio.run(one.settle(reserve(one, 300, Decimal("0.5")), 100, Decimal("0.25")))
    asyncio.run(one.flush())
    reserve(one, 200, Decimal("0.5"))
    assert list(other.tokens_remaining()) == [(700, {"caller": RUNS})]
    assert list(other.usd_remaining()) == [(1.25, {"caller": RUNS})]


class GatedLedger(BudgetLedger):
    """The real ledger, whose settlements wait for `gate` (the first fails, with `fail`) and whose decisions are
    counted."""

    def __init__(self, engine: sa.Engine, *, fail: bool = False) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.fail = fail
        self.decisions: list[int] = []  # each transaction's batch size

    def decide(self, asks: Sequence[Ask]) -> list[Answer]:
        self.decisions.append(len(asks))
        return super().decide(asks)

    def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        if self.fail:
            self.fail = False
            raise sa.exc.OperationalError("UPDATE ai_budget_days", {}, Exception("the database went away"))
        self.gate.wait()
        return super().settle_many(settlements)


def totals(engine: sa.Engine) -> tuple[int, int]:
    day = BudgetLedger(engine).day_totals("2025-06-01")[RUNS]
    return day.spent_tokens, day.reserved_tokens


def test_a_call_with_both_limits_is_admitted_and_reserved_in_one_transaction(engine: sa.Engine, clock: Clock) -> None:
    ledger = GatedLedger(engine)
    limits = Budgets({RUNS: Budget(tokens_per_day=1000, requests_per_minute=5)}, ledger, clock=clock)
    held = asyncio.run(limits.admit(RUNS, new_id("call"), 10, lambda: (300, None)))
    assert (held.tokens, ledger.decisions) == (300, [1])
    assert totals(engine) == (0, 300)


def test_a_call_refused_by_its_budget_is_not_counted_in_the_rate_window(engine: sa.Engine, clock: Clock) -> None:
    limits = budgets(engine, {RUNS: Budget(tokens_per_day=100, requests_per_minute=1)}, clock)
    with pytest.raises(ResourceExhausted) as raised:
        asyncio.run(limits.admit(RUNS, new_id("call"), 10, lambda: (101, None)))
    assert raised.value.reason == "BUDGET_EXCEEDED"
    asyncio.run(limits.admit(RUNS, new_id("call"), 10, lambda: (100, None)))


def test_concurrent_calls_of_one_caller_are_granted_exactly_what_fits(engine: sa.Engine, clock: Clock) -> None:
    ledger = GatedLedger(engine)
    ledger.gate.set()
    limits = Budgets({RUNS: Budget(tokens_per_day=1000, requests_per_minute=100)}, ledger, clock=clock)

    async def many() -> list[object]:
        calls = (limits.admit(RUNS, new_id("call"), 10, lambda: (70, None)) for _ in range(40))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(many())
    assert sum(isinstance(r, Reservation) for r in results) == 1000 // 70
    assert {r.reason for r in results if isinstance(r, ResourceExhausted)} == {"BUDGET_EXCEEDED"}
    assert totals(engine) == (0, 70 * (1000 // 70))


def test_a_pending_settlement_gives_no_budget_back_until_it_commits(engine: sa.Engine, clock: Clock) -> None:
    gated = GatedLedger(engine)
    limit = {RUNS: Budget(tokens_per_day=1000)}
    one, other = Budgets(limit, gated, clock=clock), budgets(engine, limit, clock)
    asyncio.run(one.settle(reserve(one, 900), 50, None))  # returns at once: the settlement is queued
    with pytest.raises(ResourceExhausted):
        reserve(other, 950)  # another replica sees the whole reservation while it is pending
    assert totals(engine) == (0, 900)
    gated.gate.set()
    asyncio.run(one.flush())  # (it may have committed already once the gate opened)
    assert totals(engine) == (50, 0)
    reserve(other, 950)


def test_a_refusal_waits_for_this_replicas_pending_settlements_and_asks_again(engine: sa.Engine, clock: Clock) -> None:
    gated = GatedLedger(engine)
    limits = Budgets({RUNS: Budget(tokens_per_day=1000)}, gated, clock=clock)

    async def settle_then_reserve() -> Reservation:
        await limits.settle(await limits.reserve(RUNS, 900, None, call_id=new_id("call"), lasts_s=10), 50, None)
        asking = asyncio.ensure_future(limits.reserve(RUNS, 950, None, call_id=new_id("call"), lasts_s=10))
        while len(gated.decisions) < 2:  # refused once, now waiting for the settlement
            await asyncio.sleep(0)
        gated.gate.set()
        return await asking

    assert asyncio.run(settle_then_reserve()).tokens == 950
    assert gated.decisions == [1, 1, 1]


def test_a_failed_settlement_is_logged_and_reclaimed_when_it_expires(
    engine: sa.Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failing = GatedLedger(engine, fail=True)
    failing.gate.set()
    limits = Budgets({RUNS: Budget(tokens_per_day=1000)}, failing, clock=clock)
    lost = reserve(limits, 600, lasts_s=10)
    asyncio.run(limits.settle(lost, 10, None))
    asyncio.run(limits.flush())
    assert f"settling reservation {lost.id} failed" in caplog.text
    assert totals(engine) == (0, 600)  # still held: never given back unseen
    clock.now += 10 + HOLD_GRACE_S
    assert asyncio.run(limits.reclaim()) == 1
    assert totals(engine) == (600, 0)  # no audit record: charged in full


def test_closing_commits_every_queued_settlement(engine: sa.Engine, clock: Clock) -> None:
    gated = GatedLedger(engine)
    limits = Budgets({RUNS: Budget(tokens_per_day=1000)}, gated, clock=clock)

    async def settle_and_close() -> None:
        await limits.settle(await limits.reserve(RUNS, 900, None, call_id=new_id("call"), lasts_s=10), 50, None)
        closing = asyncio.ensure_future(limits.close())
        await asyncio.sleep(0)
        assert totals(engine) == (0, 900)
        gated.gate.set()
        await closing

    asyncio.run(settle_and_close())
    assert totals(engine) == (50, 0)
