"""Per-caller limits: requests per minute (sliding window), tokens and USD per UTC day (hard limits), shared by every
gateway replica on one database.

A call is admitted only if its worst case fits: the prompt's estimated tokens plus max_tokens (and their price)
are reserved up front, so 256 concurrent calls cannot jointly overshoot a budget; the reservation is replaced by
the provider's reported usage when the call ends. The totals live in the database, not here (`BudgetStore`,
implemented by services/ai_gateway/budget_store.py): a reservation is one atomic conditional update there, granted
only if spent + reserved + this call fits, so replicas cannot jointly overshoot either. A day's totals are seeded
from the audit store the first time a caller reserves on it, so a day under way before an upgrade keeps its spend.

A reservation lives until its call's deadline plus HOLD_GRACE_S. One that was never settled (its replica crashed,
or could not reach the database when the call ended) is then reclaimed: charged at the usage its call's audit
record reports, or at the whole reservation when the call left no record (the provider may have answered before
the crash), never refunded unseen. Reclaiming happens when a caller would be refused, and beside the replay purge
(services/ai_gateway/main.py, every REPLAY_PURGE_INTERVAL_S).

The only in-process shortcut is a refusal: a caller's spend only grows during a day and the window's requests
stay in it until they age out, so a refusal seen here stays true until then and is repeated without asking the
database. Nothing is ever granted from memory. A database failure during admission propagates (the call fails
closed as UNAVAILABLE, services/common/outage_errors.py); one during settlement is logged, and the reservation is
reclaimed on expiry. Windows and days use each replica's clock: keep the replicas' clocks synchronised (NTP).

Metrics (services/common/metrics.py): refusals by caller and limit, and what each caller has left today under each
daily limit, read from the shared totals. Only callers who reserved today are reported: they are authenticated
principals from the credentials file, so the label's values are as few as the principals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from services.ai_gateway.config import Budget
from services.common.clock import to_us
from services.common.errors import FailedPrecondition, ResourceExhausted
from services.common.metrics import (
    BUDGET_TOKENS_REMAINING,
    BUDGET_USD_REMAINING,
    GATEWAY_BUDGET_REFUSALS,
    Reading,
)

WINDOW_S = 60.0
DEFAULT_KEY = "*"
# How long a reservation outlives its call's deadline before it may be reclaimed.
HOLD_GRACE_S = 300.0

log = logging.getLogger("custody.ai_gateway.budgets")


@dataclass(frozen=True)
class DayTotals:
    """One caller's day: what settled calls used, and what calls in flight reserved."""

    spent_tokens: int = 0
    spent_usd: Decimal = Decimal(0)
    reserved_tokens: int = 0
    reserved_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class DayLimits:
    tokens: int | None
    usd: Decimal | None


@dataclass(frozen=True)
class Reservation:
    """One call's worst case, held against its caller's day until settled or, after `expires_at_us`, reclaimed."""

    id: str  # the call's id (its audit record's, once recorded)
    caller: str
    day: str
    day_start_us: int
    tokens: int
    usd: Decimal
    expires_at_us: int


NO_RESERVATION = Reservation("", "", "", 0, 0, Decimal(0), 0)


class BudgetStore(Protocol):
    """The shared totals. Each method is one transaction, atomic against every other replica's."""

    def reserve(self, hold: Reservation, limits: DayLimits) -> tuple[bool, DayTotals]:
        """Records `hold` if spent + reserved + hold fits `limits` (creating the day, seeded from the audit
        store, if needed): (granted, the day's totals; those after the refusal when not granted)."""
        ...

    def settle(self, hold: Reservation, tokens: int, usd: Decimal) -> bool:
        """Replaces `hold` by the usage given; False when it was reclaimed already (nothing changes then)."""
        ...

    def reclaim_expired(self, now_us: int, caller: str | None = None) -> int:
        """Charges the holds expired by `now_us` (audited usage, else the whole hold); how many."""
        ...

    def day_totals(self, day: str) -> Mapping[str, DayTotals]:
        """Every caller's totals on `day`."""
        ...

    def admit_request(self, caller: str, request_id: str, now_us: int, window_us: int, limit: int) -> int | None:
        """Counts a request if fewer than `limit` were admitted in the window ending at `now_us`: None when
        counted, else the time of the oldest request in the window."""
        ...


class Budgets:
    def __init__(
        self,
        limits: Mapping[str, Budget],
        store: BudgetStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._store = store
        self._clock = clock
        # Refusals seen, repeated without the database while they must hold (see the module docstring).
        self._spent_seen: dict[str, tuple[str, DayTotals]] = {}
        self._window_full_until: dict[str, float] = {}
        BUDGET_TOKENS_REMAINING.register(self.tokens_remaining)
        BUDGET_USD_REMAINING.register(self.usd_remaining)

    def limit_for(self, caller: str) -> Budget | None:
        return self._limits.get(caller) or self._limits.get(DEFAULT_KEY)

    async def admit_request(self, caller: str, request_id: str) -> None:
        """Counts one request against the per-minute limit; RATE_LIMITED (with RetryInfo) when it is used up."""
        limit = self.limit_for(caller)
        if limit is None or limit.requests_per_minute is None:
            return
        now = self._clock()
        full_until = self._window_full_until.get(caller, 0.0)
        if now < full_until:
            self._rate_limited(caller, limit.requests_per_minute, full_until - now)
        oldest_us = await asyncio.to_thread(
            self._store.admit_request, caller, request_id, to_us_f(now), to_us_f(WINDOW_S), limit.requests_per_minute
        )
        if oldest_us is not None:
            until = oldest_us / 1_000_000 + WINDOW_S
            self._window_full_until[caller] = until
            self._rate_limited(caller, limit.requests_per_minute, until - now)

    def _rate_limited(self, caller: str, per_minute: int, retry: float) -> None:
        retry = max(0.001, retry)
        GATEWAY_BUDGET_REFUSALS.add(1, {"caller": caller, "limit": "requests_per_minute"})
        raise ResourceExhausted(
            "RATE_LIMITED",
            f"{caller} may make {per_minute} requests per minute; try again in {retry:.1f} s",
            metadata={"caller": caller, "limit": "requests_per_minute"},
            retry_after_s=retry,
        )

    def needs_usd_price(self, caller: str) -> bool:
        limit = self.limit_for(caller)
        return limit is not None and limit.usd_per_day is not None

    async def reserve(
        self, caller: str, tokens: int, usd: Decimal | None, *, call_id: str, lasts_s: float
    ) -> Reservation:
        """Reserves a call's worst case for `lasts_s` (its deadline) plus HOLD_GRACE_S; BUDGET_EXCEEDED when it
        does not fit, PRICE_UNKNOWN when a USD budget applies and the model has no price (an unenforceable budget
        is refused, not ignored)."""
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
        now = self._clock()
        start = self._day_start()
        day = start.date().isoformat()
        limits = DayLimits(limit.tokens_per_day, None if limit.usd_per_day is None else Decimal(str(limit.usd_per_day)))
        hold = Reservation(
            call_id, caller, day, to_us(start), tokens, usd or Decimal(0), to_us_f(now + lasts_s + HOLD_GRACE_S)
        )
        seen = self._spent_seen.get(caller)
        if seen is not None and seen[0] == day and _spent_exceeds(seen[1], hold, limits):
            self._exceeded(hold, limits, seen[1])
        granted, totals = await asyncio.to_thread(self._store.reserve, hold, limits)
        # Holds a crashed replica left may be charged less than they reserved (their audited usage).
        if not granted and await asyncio.to_thread(self._store.reclaim_expired, to_us_f(now), caller) > 0:
            granted, totals = await asyncio.to_thread(self._store.reserve, hold, limits)
        if not granted:
            self._spent_seen[caller] = (day, totals)
            self._exceeded(hold, limits, totals)
        return hold

    def _exceeded(self, hold: Reservation, limits: DayLimits, day: DayTotals) -> None:
        problems: list[tuple[str, str]] = []
        if limits.tokens is not None and day.spent_tokens + day.reserved_tokens + hold.tokens > limits.tokens:
            problems.append(
                (
                    "tokens_per_day",
                    f"tokens per day: {day.spent_tokens} used, {day.reserved_tokens} in flight, this call may "
                    f"need {hold.tokens}, limit {limits.tokens}",
                )
            )
        if limits.usd is not None and day.spent_usd + day.reserved_usd + hold.usd > limits.usd:
            problems.append(
                (
                    "usd_per_day",
                    f"USD per day: {day.spent_usd:.6f} used, {day.reserved_usd:.6f} in flight, this call may cost "
                    f"{hold.usd:.6f}, limit {limits.usd}",
                )
            )
        if not problems:  # the totals read after a refusal can already show room a settled call gave back
            limit = "tokens_per_day" if limits.tokens is not None else "usd_per_day"
            problems.append((limit, "taken by the calls in flight when it was asked"))
        exceeded = problems[0][0]
        GATEWAY_BUDGET_REFUSALS.add(1, {"caller": hold.caller, "limit": exceeded})
        raise ResourceExhausted(
            "BUDGET_EXCEEDED",
            f"{hold.caller} budget exceeded ({'; '.join(text for _, text in problems)}); it resets at 00:00 UTC",
            metadata={"caller": hold.caller, "limit": exceeded},
            retry_after_s=self._seconds_to_midnight(),
        )

    async def settle(self, reservation: Reservation, tokens: int | None, usd: Decimal | None) -> None:
        """Replaces a reservation with what the call really used (the reservation itself when unknown). A failure
        is logged, not raised: the call is over, and its reservation is reclaimed once it expires."""
        if reservation is NO_RESERVATION:
            return
        used_tokens = reservation.tokens if tokens is None else tokens
        used_usd = reservation.usd if usd is None else usd
        try:
            await asyncio.to_thread(self._store.settle, reservation, used_tokens, used_usd)
        except Exception:
            log.exception("settling reservation %s failed; it is reclaimed when it expires", reservation.id)

    async def reclaim(self) -> int:
        """Charges every expired reservation (services/ai_gateway/main.py runs it beside the replay purge)."""
        return await asyncio.to_thread(self._store.reclaim_expired, to_us_f(self._clock()))

    def tokens_remaining(self) -> Reading:
        """Per caller with a tokens_per_day limit and a reservation today: tokens left (in-flight reservations
        count as spent), from the shared totals. Read on the metrics thread."""
        return [
            (max(0, limit.tokens_per_day - day.spent_tokens - day.reserved_tokens), {"caller": caller})
            for caller, limit, day in self._today()
            if limit.tokens_per_day is not None
        ]

    def usd_remaining(self) -> Reading:
        """Per caller with a usd_per_day limit and a reservation today: USD left, in-flight reservations spent."""
        return [
            (
                max(0.0, float(Decimal(str(limit.usd_per_day)) - day.spent_usd - day.reserved_usd)),
                {"caller": caller},
            )
            for caller, limit, day in self._today()
            if limit.usd_per_day is not None
        ]

    def _today(self) -> list[tuple[str, Budget, DayTotals]]:
        totals = self._store.day_totals(self._day_start().date().isoformat())
        found = []
        for caller, day in totals.items():
            limit = self.limit_for(caller)
            if limit is not None:
                found.append((caller, limit, day))
        return found

    def _day_start(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def _seconds_to_midnight(self) -> float:
        return max(1.0, math.ceil((self._day_start() + timedelta(days=1)).timestamp() - self._clock()))


def _spent_exceeds(day: DayTotals, hold: Reservation, limits: DayLimits) -> bool:
    """Whether what was already spent (which only grows during a day) leaves no room for `hold`."""
    over_tokens = limits.tokens is not None and day.spent_tokens + hold.tokens > limits.tokens
    return over_tokens or (limits.usd is not None and day.spent_usd + hold.usd > limits.usd)


def to_us_f(seconds: float) -> int:
    """Epoch (or duration) seconds as whole microseconds."""
    return round(seconds * 1_000_000)
