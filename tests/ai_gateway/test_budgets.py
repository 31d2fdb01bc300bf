"""Per-caller limits: requests per minute, tokens and USD per day, reserved up front, seeded from the store."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.ai_gateway.budgets import NO_RESERVATION, Budgets
from services.ai_gateway.config import Budget
from services.common.errors import FailedPrecondition, ResourceExhausted

NOON = 1_748_779_200.0  # 2025-06-01T12:00:00Z


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budgets(limits: dict[str, Budget], clock: Clock | None = None, spent: tuple[int, Decimal] = (0, Decimal(0))):
    loads: list[tuple[str, int]] = []

    async def load(caller: str, since_us: int) -> tuple[int, Decimal]:
        loads.append((caller, since_us))
        return spent

    return Budgets(limits, load, clock=clock or Clock()), loads


def test_requests_beyond_the_per_minute_limit_are_rate_limited_until_the_window_frees() -> None:
    clock = Clock()
    limits, _ = budgets({"service:runs": Budget(requests_per_minute=2)}, clock)
    limits.admit_request("service:runs")
    clock.now += 20
    limits.admit_request("service:runs")
    with pytest.raises(ResourceExhausted) as raised:
        limits.admit_request("service:runs")
    assert raised.value.reason == "RATE_LIMITED"
    assert raised.value.retry_after_s == pytest.approx(40)
    clock.now += 40.001
    limits.admit_request("service:runs")


def test_the_default_entry_applies_to_callers_without_their_own() -> None:
    limits, _ = budgets({"*": Budget(requests_per_minute=1), "service:runs": Budget(requests_per_minute=5)})
    limits.admit_request("service:art_studio")
    with pytest.raises(ResourceExhausted):
        limits.admit_request("service:art_studio")
    for _ in range(5):
        limits.admit_request("service:runs")


def test_callers_without_limits_are_not_counted() -> None:
    limits, loads = budgets({})
    for _ in range(1000):
        limits.admit_request("service:runs")
    assert asyncio.run(limits.reserve("service:runs", 10**9, None)) is NO_RESERVATION
    assert loads == []


def test_a_call_whose_worst_case_does_not_fit_the_token_budget_is_refused_until_midnight() -> None:
    limits, _ = budgets({"service:runs": Budget(tokens_per_day=1000)}, spent=(900, Decimal(0)))
    with pytest.raises(ResourceExhausted) as raised:
        asyncio.run(limits.reserve("service:runs", 101, None))
    assert raised.value.reason == "BUDGET_EXCEEDED"
    assert raised.value.retry_after_s == 12 * 3600
    assert asyncio.run(limits.reserve("service:runs", 100, None)).tokens == 100


def test_concurrent_reservations_cannot_jointly_overshoot() -> None:
    limits, _ = budgets({"service:runs": Budget(tokens_per_day=1000)})

    async def many() -> list[object]:
        return await asyncio.gather(
            *(limits.reserve("service:runs", 300, None) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(many())
    assert sum(isinstance(r, ResourceExhausted) for r in results) == 2


def test_settling_replaces_the_reservation_with_the_reported_usage() -> None:
    limits, _ = budgets({"service:runs": Budget(tokens_per_day=1000)})

    async def scenario() -> None:
        reservation = await limits.reserve("service:runs", 900, None)
        limits.settle(reservation, 50, None)
        await limits.reserve("service:runs", 950, None)  # 50 used + 950 fits exactly

    asyncio.run(scenario())


def test_an_unknown_usage_is_charged_at_the_reservation() -> None:
    limits, _ = budgets({"service:runs": Budget(tokens_per_day=1000)})

    async def scenario() -> None:
        limits.settle(await limits.reserve("service:runs", 600, None), None, None)
        await limits.reserve("service:runs", 401, None)

    with pytest.raises(ResourceExhausted):
        asyncio.run(scenario())


def test_the_usd_budget_counts_reserved_dollars() -> None:
    limits, _ = budgets({"service:runs": Budget(usd_per_day=1.0)}, spent=(0, Decimal("0.75")))
    with pytest.raises(ResourceExhausted) as raised:
        asyncio.run(limits.reserve("service:runs", 1, Decimal("0.30")))
    assert raised.value.metadata["limit"] == "usd_per_day"


def test_a_usd_budget_refuses_a_model_without_a_price() -> None:
    limits, _ = budgets({"service:runs": Budget(usd_per_day=1.0)})
    with pytest.raises(FailedPrecondition) as raised:
        asyncio.run(limits.reserve("service:runs", 1, None))
    assert raised.value.reason == "PRICE_UNKNOWN"


def test_day_totals_are_loaded_once_per_caller_per_day() -> None:
    clock = Clock()
    limits, loads = budgets({"*": Budget(tokens_per_day=10**6)}, clock)

    async def scenario() -> None:
        await asyncio.gather(*(limits.reserve("service:runs", 1, None) for _ in range(10)))
        clock.now += 24 * 3600
        await limits.reserve("service:runs", 1, None)

    asyncio.run(scenario())
    day_start_us = int((NOON - 12 * 3600) * 1_000_000)
    assert loads == [("service:runs", day_start_us), ("service:runs", day_start_us + 24 * 3600 * 1_000_000)]


def test_a_new_day_starts_from_what_the_store_reports() -> None:
    clock = Clock()
    limits, _ = budgets({"service:runs": Budget(tokens_per_day=100)}, clock)

    async def scenario() -> None:
        await limits.reserve("service:runs", 100, None)
        clock.now += 24 * 3600
        await limits.reserve("service:runs", 100, None)

    asyncio.run(scenario())
