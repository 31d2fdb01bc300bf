"""The per-replica in-memory budgets that the shared budget ledger replaced (services/ai_gateway/budgets.py before
it), kept verbatim but for the metrics registration as bench/gateway/bench_budgets.py's baseline. Each replica
granted the whole budget: this is not exact across replicas, and nothing in the service uses it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.ai_gateway.config import Budget
from services.common.clock import to_us
from services.common.errors import FailedPrecondition, ResourceExhausted
from services.common.metrics import GATEWAY_BUDGET_REFUSALS, Reading

WINDOW_S = 60.0
DEFAULT_KEY = "*"

# (caller id, day start in epoch microseconds) -> (tokens, usd) already spent, from the audit store.
UsageLoader = Callable[[str, int], Awaitable[tuple[int, Decimal]]]


@dataclass
class _Day:
    day: str
    tokens: int = 0
    usd: Decimal = Decimal(0)
    reserved_tokens: int = 0
    reserved_usd: Decimal = Decimal(0)


@dataclass
class _Caller:
    requests: deque[float] = field(default_factory=deque)
    today: _Day | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Reservation:
    caller: str
    day: str
    tokens: int
    usd: Decimal


NO_RESERVATION = Reservation("", "", 0, Decimal(0))


class Budgets:
    def __init__(
        self,
        limits: Mapping[str, Budget],
        load_usage: UsageLoader,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._load_usage = load_usage
        self._clock = clock
        self._callers: dict[str, _Caller] = {}

    def limit_for(self, caller: str) -> Budget | None:
        return self._limits.get(caller) or self._limits.get(DEFAULT_KEY)

    def admit_request(self, caller: str) -> None:
        """Counts one request against the per-minute limit; RATE_LIMITED (with RetryInfo) when it is used up."""
        limit = self.limit_for(caller)
        if limit is None or limit.requests_per_minute is None:
            return
        now = self._clock()
        window = self._state(caller).requests
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= limit.requests_per_minute:
            retry = max(0.001, window[0] + WINDOW_S - now)
            GATEWAY_BUDGET_REFUSALS.add(1, {"caller": caller, "limit": "requests_per_minute"})
            raise ResourceExhausted(
                "RATE_LIMITED",
                f"{caller} may make {limit.requests_per_minute} requests per minute; try again in {retry:.1f} s",
                metadata={"caller": caller, "limit": "requests_per_minute"},
                retry_after_s=retry,
            )
        window.append(now)

    def needs_usd_price(self, caller: str) -> bool:
        limit = self.limit_for(caller)
        return limit is not None and limit.usd_per_day is not None

    async def reserve(self, caller: str, tokens: int, usd: Decimal | None) -> Reservation:
        """Reserves a call's worst case; BUDGET_EXCEEDED when it does not fit, PRICE_UNKNOWN when a USD budget
        applies and the model has no price (an unenforceable budget is refused, not ignored)."""
        limit = self.limit_for(caller)
        if limit is None or (limit.tokens_per_day is None and limit.usd_per_day is None):
            return NO_RESERVATION
        if limit.usd_per_day is not None and usd is None:
            raise FailedPrecondition(
                "PRICE_UNKNOWN",
                f"{caller} has a USD budget but this model has no price in the price table, so its cost cannot "
                "be bounded; choose a priced model or add it to the price table",
                metadata={"caller": caller},
            )
        day = await self._today(caller)
        usd = usd or Decimal(0)
        problems = []
        if limit.tokens_per_day is not None and day.tokens + day.reserved_tokens + tokens > limit.tokens_per_day:
            problems.append(
                f"tokens per day: {day.tokens} used, {day.reserved_tokens} in flight, this call may need {tokens}, "
                f"limit {limit.tokens_per_day}"
            )
        if limit.usd_per_day is not None and day.usd + day.reserved_usd + usd > Decimal(str(limit.usd_per_day)):
            problems.append(
                f"USD per day: {day.usd:.6f} used, {day.reserved_usd:.6f} in flight, this call may cost {usd:.6f}, "
                f"limit {limit.usd_per_day}"
            )
        if problems:
            retry = self._seconds_to_midnight()
            exceeded = "tokens_per_day" if "tokens" in problems[0] else "usd_per_day"
            GATEWAY_BUDGET_REFUSALS.add(1, {"caller": caller, "limit": exceeded})
            raise ResourceExhausted(
                "BUDGET_EXCEEDED",
                f"{caller} budget exceeded ({'; '.join(problems)}); it resets at 00:00 UTC",
                metadata={"caller": caller, "limit": exceeded},
                retry_after_s=retry,
            )
        day.reserved_tokens += tokens
        day.reserved_usd += usd
        return Reservation(caller, day.day, tokens, usd)

    def settle(self, reservation: Reservation, tokens: int | None, usd: Decimal | None) -> None:
        """Replaces a reservation with what the call really used (the reservation itself when unknown)."""
        if reservation is NO_RESERVATION:
            return
        state = self._state(reservation.caller)
        day = state.today
        if day is None or day.day != reservation.day:
            return  # the day turned over: yesterday's spend no longer counts
        day.reserved_tokens -= reservation.tokens
        day.reserved_usd -= reservation.usd
        day.tokens += reservation.tokens if tokens is None else tokens
        day.usd += reservation.usd if usd is None else usd

    def tokens_remaining(self) -> Reading:
        """Per caller with a tokens_per_day limit and a reservation today: tokens left (in-flight reservations
        count as spent). Read on the metrics thread: a snapshot of the callers, no lock taken."""
        return [
            (max(0, limit.tokens_per_day - day.tokens - day.reserved_tokens), {"caller": caller})
            for caller, limit, day in self._today_snapshot()
            if limit.tokens_per_day is not None
        ]

    def usd_remaining(self) -> Reading:
        """Per caller with a usd_per_day limit and a reservation today: USD left, in-flight reservations spent."""
        return [
            (max(0.0, float(Decimal(str(limit.usd_per_day)) - day.usd - day.reserved_usd)), {"caller": caller})
            for caller, limit, day in self._today_snapshot()
            if limit.usd_per_day is not None
        ]

    def _today_snapshot(self) -> list[tuple[str, Budget, _Day]]:
        today = self._day_start().date().isoformat()
        found = []
        for caller, state in list(self._callers.items()):
            day, limit = state.today, self.limit_for(caller)
            if day is not None and day.day == today and limit is not None:
                found.append((caller, limit, day))
        return found

    def _state(self, caller: str) -> _Caller:
        return self._callers.setdefault(caller, _Caller())

    async def _today(self, caller: str) -> _Day:
        state = self._state(caller)
        start = self._day_start()
        key = start.date().isoformat()
        if state.today is not None and state.today.day == key:
            return state.today
        async with state.lock:
            if state.today is None or state.today.day != key:
                tokens, usd = await self._load_usage(caller, to_us(start))
                state.today = _Day(key, tokens, usd)
        return state.today

    def _day_start(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def _seconds_to_midnight(self) -> float:
        return max(1.0, math.ceil((self._day_start() + timedelta(days=1)).timestamp() - self._clock()))
